"""The chat generation process: loads one model and streams answers as JSON lines on stdout.

Started by :class:`heretic_tui.core.models.chat.ChatSession` as ``python -m heretic_tui.core.models.chat_worker``. Generation lives in its own process so
the TUI never imports torch, never blocks on a forward pass, and never has a native library print over its
screen: file descriptor 1 is moved onto stderr (the session's log file) at start, and protocol lines go through a
private duplicate of the original stdout.

Requests (one JSON object per stdin line), ``op`` being one of:
  ``load``      ``{"model": {ModelSettings fields}}`` or ``{"run_dir": ..., "trial": n}``
  ``generate``  ``{"id": ..., "messages": [{"role", "content"}...], "max_new_tokens": n}``
  ``stop``      end the generation in flight at the next token (what was generated so far is kept)
  ``quit``      exit
Replies: ``loaded`` (name, seconds, device), ``token`` (id, text), ``done`` (id, text, stopped), ``error`` (message).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.chat_template import render_generation_prompt
from heretic_tui.core.models.streaming import stream_generation


class ProtocolWriter:
    """Writes reply lines to the private stdout, one whole line at a time from any thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, **reply: Any) -> None:
        line = json.dumps(reply, ensure_ascii=False)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def take_over_stdout() -> IO[str]:
    """Keep a private handle on stdout for the protocol and point fd 1 at stderr for everything else."""
    private = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return private


def load(request: dict[str, Any]) -> tuple[Any, Any, str]:
    """Load the model a request names: a run's trial (abliterated in memory) or a plain model."""
    if request.get("run_dir") is not None:
        from heretic_tui.core.shipping.export import load_trial_model

        run_dir = Path(request["run_dir"])
        trial = int(request["trial"])
        model, tokenizer = load_trial_model(run_dir, trial)
        return model, tokenizer, f"{run_dir.name} trial {trial}"
    from heretic_tui.core.models.loading import load_model
    from heretic_tui.core.settings import settings_from_dict

    settings = settings_from_dict({"model": request.get("model", {})}, origin="Chat").model
    loaded = load_model(settings, log=lambda message: print(message, file=sys.stderr, flush=True))
    return loaded.model, loaded.tokenizer, settings.model


class Generator:
    """Runs one streamed generation at a time on a background thread so ``stop`` can be read meanwhile."""

    def __init__(self, model: Any, tokenizer: Any, writer: ProtocolWriter) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.writer = writer
        self.stop_requested = threading.Event()
        self.thread: threading.Thread | None = None
        self.busy = False
        """True from a generate request until just before its reply; the caller may send the next one at once."""

    def start(self, request: dict[str, Any]) -> None:
        self.stop_requested.clear()
        self.busy = True
        self.thread = threading.Thread(target=self._run, args=(request,), daemon=True)
        self.thread.start()

    def _run(self, request: dict[str, Any]) -> None:
        identifier = request.get("id")
        try:
            text = self._generate(request)
        except Exception as error:
            traceback.print_exc()
            self.busy = False
            self.writer.send(type="error", id=identifier, message=f"{type(error).__name__}: {error}")
            return
        stopped = self.stop_requested.is_set()
        self.busy = False
        self.writer.send(type="done", id=identifier, text=text, stopped=stopped)

    def _generate(self, request: dict[str, Any]) -> str:
        from transformers import StoppingCriteria, StoppingCriteriaList

        stop_requested = self.stop_requested

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop_requested.is_set()

        prompt = render_generation_prompt(self.tokenizer, request["messages"])
        device = next(self.model.parameters()).device
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        arguments = dict(
            **inputs,
            max_new_tokens=int(request.get("max_new_tokens", 512)),
            do_sample=False,
            stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        pieces: list[str] = []
        for piece in stream_generation(self.model, self.tokenizer, arguments):
            pieces.append(piece)
            self.writer.send(type="token", id=request.get("id"), text=piece)
        return "".join(pieces)


def serve(requests: IO[str], writer: ProtocolWriter) -> int:
    generator: Generator | None = None
    for line in requests:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except ValueError:
            writer.send(type="error", message=f"not a JSON request: {line[:200]}")
            continue
        operation = request.get("op")
        if operation == "quit":
            break
        if operation == "stop":
            if generator is not None:
                generator.stop_requested.set()
        elif operation == "load":
            started = time.perf_counter()
            try:
                model, tokenizer, name = load(request)
            except UserInputError as error:
                writer.send(type="error", message=str(error), fatal=True)
                continue
            except Exception as error:
                traceback.print_exc()
                writer.send(type="error", message=f"{type(error).__name__}: {error}", fatal=True)
                continue
            generator = Generator(model, tokenizer, writer)
            device = str(next(model.parameters()).device)
            writer.send(type="loaded", name=name, seconds=time.perf_counter() - started, device=device)
        elif operation == "generate":
            if generator is None:
                writer.send(type="error", id=request.get("id"), message="no model is loaded yet")
            elif generator.busy:
                writer.send(type="error", id=request.get("id"), message="a generation is already running")
            else:
                generator.start(request)
        else:
            writer.send(type="error", message=f"unknown request {operation!r}")
    if generator is not None and generator.thread is not None and generator.thread.is_alive():
        generator.stop_requested.set()
        generator.thread.join(timeout=10)
    return 0


def main() -> None:
    writer = ProtocolWriter(take_over_stdout())
    sys.exit(serve(sys.stdin, writer))


if __name__ == "__main__":
    main()
