"""A conversation with a model that runs in its own process (``python -m heretic_tui.core.models.chat_worker``).

The caller (the TUI's thread worker, or a script) gets streamed text pieces from :meth:`ChatSession.ask` while the
model generates in the other process; :meth:`ChatSession.stop` can be called from any thread to cut an answer
short. The worker's own output (library warnings, tracebacks) goes to a log file, never to the terminal.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import platformdirs

from heretic_tui.core.runs.journal import tail_lines
from heretic_tui.core.runs.lifecycle import worker_environment
from heretic_tui.core.settings import APP_NAME, ModelSettings

DEFAULT_MAX_NEW_TOKENS = 512


class ChatError(Exception):
    """The chat worker could not load the model, failed while generating, or died; the message says which."""


@dataclass(frozen=True)
class ChatModel:
    """What to chat with: a plain model (as the loader's settings) or one trial of an abliteration run."""

    label: str
    model_settings: dict[str, Any] | None = None
    run_dir: str | None = None
    trial: int | None = None

    @classmethod
    def plain(cls, settings: ModelSettings) -> ChatModel:
        return cls(label=settings.model, model_settings=dataclasses.asdict(settings))

    @classmethod
    def from_trial(cls, run_dir: Path, trial: int) -> ChatModel:
        return cls(label=f"{Path(run_dir).name} · trial {trial}", run_dir=str(run_dir), trial=trial)

    def load_request(self) -> dict[str, Any]:
        if self.run_dir is not None:
            return {"op": "load", "run_dir": self.run_dir, "trial": self.trial}
        return {"op": "load", "model": self.model_settings or {}}


def default_log_path() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME)) / "chat-worker.log"


class ChatSession:
    """One model, one conversation history, one worker process.

    ``ask`` blocks (it is meant for a background thread) and yields the answer piece by piece; the history keeps
    the answer even when it was stopped early, because that is what the person saw.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        system_prompt: str = "",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        log_path: Path | None = None,
    ) -> None:
        self.model = model
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.log_path = log_path or default_log_path()
        self.history: list[dict[str, str]] = []
        self.loaded_name: str | None = None
        self.last_answer_stopped = False
        self.device: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._write_lock = threading.Lock()
        self._request_numbers = itertools.count(1)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the worker and load the model; blocks until it is loaded. Returns the loaded model's name."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a", encoding="utf-8")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "heretic_tui.core.models.chat_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                encoding="utf-8",
                bufsize=1,
                env=worker_environment(),
                start_new_session=True,
            )
        finally:
            log.close()
        self._send(self.model.load_request())
        for reply in self._replies():
            if reply.get("type") == "loaded":
                self.loaded_name = str(reply.get("name", self.model.label))
                self.device = reply.get("device")
                return self.loaded_name
            if reply.get("type") == "error":
                self.close()
                raise ChatError(str(reply.get("message", "the model could not be loaded")))
        raise self._death_error("while loading the model")

    def ask(self, text: str) -> Iterator[str]:
        """Send a user message and yield the answer as it is generated (earlier turns are sent along)."""
        if not self.running:
            raise ChatError("The chat worker is not running; start the session first.")
        turn = {"role": "user", "content": text}
        messages = [*self.history, turn]
        if self.system_prompt:
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        identifier = next(self._request_numbers)
        self._send({"op": "generate", "id": identifier, "messages": messages, "max_new_tokens": self.max_new_tokens})
        pieces: list[str] = []
        for reply in self._replies():
            kind = reply.get("type")
            if reply.get("id") not in (identifier, None):
                continue
            if kind == "token":
                pieces.append(str(reply.get("text", "")))
                yield pieces[-1]
            elif kind == "done":
                self.last_answer_stopped = bool(reply.get("stopped"))
                self.history.extend([turn, {"role": "assistant", "content": "".join(pieces)}])
                return
            elif kind == "error":
                raise ChatError(str(reply.get("message", "generation failed")))
        raise self._death_error("while generating")

    def stop(self) -> None:
        """End the answer being generated; safe to call from any thread, and a no-op when nothing runs."""
        if self.running:
            try:
                self._send({"op": "stop"})
            except ChatError:
                pass

    def clear(self) -> None:
        self.history.clear()

    def close(self) -> None:
        """Ask the worker to quit, and kill it if it does not within a few seconds."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is None:
            try:
                with self._write_lock:
                    assert process.stdin is not None
                    process.stdin.write(json.dumps({"op": "stop"}) + "\n" + json.dumps({"op": "quit"}) + "\n")
                    process.stdin.flush()
            except (OSError, ValueError):
                pass
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def _send(self, request: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None:
            raise ChatError("The chat worker is not running.")
        try:
            with self._write_lock:
                process.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
                process.stdin.flush()
        except (OSError, ValueError):
            raise self._death_error("while sending a request") from None

    def _replies(self) -> Iterator[dict[str, Any]]:
        process = self._process
        if process is None or process.stdout is None:
            return
        stream: IO[str] = process.stdout
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict):
                yield reply

    def _death_error(self, when: str) -> ChatError:
        code = self._process.poll() if self._process is not None else None
        tail = "\n".join(tail_lines(self.log_path, 8))
        return ChatError(
            f"The chat worker stopped {when} (exit code {code}). Its log is {self.log_path}"
            + (f"; last lines:\n{tail}" if tail else ".")
        )
