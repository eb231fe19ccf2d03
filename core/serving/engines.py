"""What generates the answers: the built-in transformers engine, or vLLM when it is installed (and a GPU is there).

Both take one :class:`CompletionRequest` and stream the answer's text as it is generated, filling in a
:class:`CompletionOutcome` (why it ended, how many tokens) when the stream ends, so the web layer never knows which
engine it talks to. Every model renders the conversation through its own chat template
(:func:`~heretic_tui.core.models.chat_template.render_generation_prompt`, the same rendering abliteration, compare and
chat use), so a served trial sees its prompts exactly as it was measured on them.

The transformers engine runs one generation at a time per model (a lock): a single-user A/B server on a workstation
needs no batching scheduler, and a second request simply waits. Sampling follows the OpenAI API, not the model's
generation config: temperature 1 and top_p 1 unless the request says otherwise, and temperature 0 is greedy.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.chat_template import accepts_system_turn, render_generation_prompt
from heretic_tui.core.models.references import KIND_TRIAL, ModelReference
from heretic_tui.core.models.streaming import stream_generation
from heretic_tui.core.serving.stop_sequences import StopSequenceCutter
from heretic_tui.core.settings import Settings

if TYPE_CHECKING:
    from heretic_tui.core.models.loading import LoadedModel

ENGINE_AUTO = "auto"
ENGINE_VLLM = "vllm"
ENGINE_TRANSFORMERS = "transformers"

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclass(frozen=True)
class CompletionRequest:
    """One chat completion as the engines need it (the web layer has checked every field)."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class CompletionOutcome:
    """Filled in by the engine when its stream ends: the OpenAI finish_reason and the usage figures."""

    finish_reason: str = FINISH_STOP
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    engine_name: str

    def stream(self, request: CompletionRequest, outcome: CompletionOutcome) -> AsyncIterator[str]:
        """The answer's text piece by piece; ``outcome`` is complete once the iteration ends."""
        ...


_END = object()


class TransformersEngine:
    """A model loaded with transformers (any reference heretic-tui loads, trials of a run included)."""

    engine_name = ENGINE_TRANSFORMERS

    def __init__(self, loaded: LoadedModel) -> None:
        from heretic_tui.core.models.generation import end_of_sequence_ids

        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.system_accepted = accepts_system_turn(self.tokenizer)
        self.lock = threading.Lock()
        self.end_ids = end_of_sequence_ids(loaded)

    async def stream(self, request: CompletionRequest, outcome: CompletionOutcome) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        thread = threading.Thread(target=self._generate, args=(request, outcome, cancelled, put), daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()

    def _generate(self, request: CompletionRequest, outcome: CompletionOutcome, cancelled: threading.Event,
                  put: Callable[[Any], None]) -> None:
        try:
            with self.lock:
                if not cancelled.is_set():
                    self._generate_locked(request, outcome, cancelled, put)
        except BaseException as error:
            put(error)
        finally:
            put(_END)

    def _generate_locked(self, request: CompletionRequest, outcome: CompletionOutcome, cancelled: threading.Event,
                         put: Callable[[Any], None]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        prompt = render_generation_prompt(self.tokenizer, request.messages, self.system_accepted)
        device = next(self.model.parameters()).device
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        prompt_length = int(inputs["input_ids"].shape[1])
        cutter = StopSequenceCutter(request.stop)
        counted = {"tokens": 0, "last": -1}

        class CountAndStop(StoppingCriteria):
            """Counts the generated tokens and ends generation once the client left or a stop sequence came."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                counted["tokens"] = int(input_ids.shape[1]) - prompt_length
                counted["last"] = int(input_ids[0, -1])
                return cancelled.is_set() or cutter.stopped

        arguments: dict[str, Any] = dict(
            **inputs,
            max_new_tokens=request.max_tokens,
            stopping_criteria=StoppingCriteriaList([CountAndStop()]),
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        )
        if request.temperature == 0:
            arguments.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            arguments.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=0)
        if request.seed is not None:
            torch.manual_seed(request.seed)
        for piece in stream_generation(self.model, self.tokenizer, arguments):
            text = cutter.feed(piece)
            if text:
                put(text)
        rest = cutter.finish()
        if rest:
            put(rest)
        outcome.prompt_tokens = prompt_length
        outcome.completion_tokens = counted["tokens"]
        ran_out = counted["tokens"] >= request.max_tokens and counted["last"] not in self.end_ids
        outcome.finish_reason = FINISH_LENGTH if ran_out and not cutter.stopped else FINISH_STOP


class VllmEngine:
    """A model folder or hub id served by vLLM's asynchronous engine (continuous batching on the GPU)."""

    engine_name = ENGINE_VLLM

    def __init__(self, location: str, settings: Settings, memory_share: float) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        from heretic_tui.core.models.loading import load_tokenizer

        self.tokenizer = load_tokenizer(location, settings.model)
        self.system_accepted = accepts_system_turn(self.tokenizer)
        arguments = AsyncEngineArgs(model=location, tokenizer=location, revision=settings.model.revision or None,
                                    trust_remote_code=settings.model.trust_remote_code,
                                    gpu_memory_utilization=memory_share)
        self.engine = AsyncLLMEngine.from_engine_args(arguments)

    async def stream(self, request: CompletionRequest, outcome: CompletionOutcome) -> AsyncIterator[str]:
        from vllm import SamplingParams

        prompt = render_generation_prompt(self.tokenizer, request.messages, self.system_accepted)
        parameters = SamplingParams(max_tokens=request.max_tokens, temperature=request.temperature,
                                    top_p=request.top_p, stop=list(request.stop) or None, seed=request.seed)
        sent = 0
        final: Any = None
        async for output in self.engine.generate(prompt, parameters, f"heretic-{uuid.uuid4().hex}"):
            final = output
            text = output.outputs[0].text
            if len(text) > sent:
                yield text[sent:]
                sent = len(text)
        if final is not None:
            completion = final.outputs[0]
            outcome.prompt_tokens = len(final.prompt_token_ids or [])
            outcome.completion_tokens = len(completion.token_ids)
            outcome.finish_reason = FINISH_LENGTH if completion.finish_reason == FINISH_LENGTH else FINISH_STOP


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def engine_for(reference: ModelReference, settings: Settings, cuda_available: Callable[[], bool]) -> str:
    """The engine a model gets: trials and adapters always transformers (vLLM cannot apply them in memory)."""
    return engine_choice(reference, settings, cuda_available)[0]


def engine_choice(reference: ModelReference, settings: Settings,
                  cuda_available: Callable[[], bool]) -> tuple[str, str]:
    """The engine a model gets and why, as the server's log says it (so 'auto' never leaves anyone guessing)."""
    choice = settings.serve.serve_engine
    plain = reference.kind != KIND_TRIAL and not reference.is_adapter
    in_memory = "a trial or an adapter is applied in memory, which vLLM cannot do (export it to serve it with vLLM)"
    if choice == ENGINE_VLLM:
        if not vllm_installed():
            raise UserInputError(
                "serve.serve_engine is 'vllm' but vLLM is not installed. Install it (pip install vllm, on a machine "
                "with a CUDA GPU), or set serve.serve_engine=auto to use the built-in transformers engine."
            )
        return (ENGINE_VLLM, "serve.serve_engine is 'vllm'") if plain else (ENGINE_TRANSFORMERS, in_memory)
    if choice == ENGINE_TRANSFORMERS:
        return ENGINE_TRANSFORMERS, "serve.serve_engine is 'transformers'"
    if not plain:
        return ENGINE_TRANSFORMERS, in_memory
    if not vllm_installed():
        return ENGINE_TRANSFORMERS, "vLLM is not installed (pip install vllm, on a CUDA machine, to use it)"
    if not cuda_available():
        return ENGINE_TRANSFORMERS, "vLLM is installed but no CUDA GPU is visible"
    return ENGINE_VLLM, "vLLM is installed and a CUDA GPU is visible"


VLLM_MEMORY_SHARE = 0.85
"""Share of the GPU memory all vLLM engines of one server take together (vLLM reserves its share up front, so
two models each asking for vLLM's default 0.9 could never both start); the rest is left for transformers models
and the CUDA contexts."""


def load_engine(reference: ModelReference, settings: Settings, log: Callable[[str], None],
                vllm_models: int = 1) -> Engine:
    """Load one served model with the engine :func:`engine_for` picks (``vllm_models``: how many of the server's
    models vLLM serves, which split its memory)."""
    import torch

    from heretic_tui.core.models.loading import resolve_model_location
    from heretic_tui.core.shipping.compare import load_compared_model

    started = time.perf_counter()
    engine: Engine
    name, why = engine_choice(reference, settings, torch.cuda.is_available)
    log(f"{reference.label} is served by the {name} engine: {why}")
    if name == ENGINE_VLLM:
        engine = VllmEngine(resolve_model_location(reference.location), settings,
                            VLLM_MEMORY_SHARE / max(1, vllm_models))
    else:
        engine = TransformersEngine(load_compared_model(reference, settings, log))
    log(f"loaded {reference.label} with {engine.engine_name} in {time.perf_counter() - started:.1f}s")
    return engine

