"""The vLLM engine's path with a fake ``vllm`` module at the import boundary (no real vLLM here): what it asks
vLLM for, how it turns vLLM's cumulative outputs into a stream, and the server's log line saying which engine runs
and why."""

from __future__ import annotations

import asyncio
import importlib.machinery
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from heretic_tui.core.models.references import parse_model_reference
from heretic_tui.core.serving import engines
from heretic_tui.core.serving.engines import (
    ENGINE_TRANSFORMERS,
    ENGINE_VLLM,
    FINISH_LENGTH,
    FINISH_STOP,
    CompletionOutcome,
    CompletionRequest,
    VllmEngine,
    engine_choice,
    load_engine,
)
from heretic_tui.core.settings import Settings


@dataclass
class FakeCompletion:
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class FakeOutput:
    outputs: list[FakeCompletion]
    prompt_token_ids: list[int]


@dataclass
class FakeVllm:
    """What the code under test asked the fake vLLM for."""

    engine_arguments: dict[str, Any] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)
    sampling: list[dict[str, Any]] = field(default_factory=list)
    pieces: tuple[str, ...] = ("Sure", "Sure, here", "Sure, here it is.")
    finish_reason: str = "length"


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> FakeVllm:
    record = FakeVllm()
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)

    class AsyncEngineArgs:
        def __init__(self, **arguments: Any) -> None:
            record.engine_arguments = arguments

    class FakeEngine:
        async def generate(self, prompt: str, parameters: Any, request_id: str):
            assert request_id.startswith("heretic-")
            record.prompts.append(prompt)
            for index, text in enumerate(record.pieces):
                last = index == len(record.pieces) - 1
                yield FakeOutput([FakeCompletion(text, list(range(index + 1)),
                                                 record.finish_reason if last else None)], [1, 2, 3, 4, 5])

    class AsyncLLMEngine:
        @staticmethod
        def from_engine_args(arguments: AsyncEngineArgs) -> FakeEngine:
            return FakeEngine()

    class SamplingParams:
        def __init__(self, **arguments: Any) -> None:
            record.sampling.append(arguments)

    module.AsyncEngineArgs = AsyncEngineArgs
    module.AsyncLLMEngine = AsyncLLMEngine
    module.SamplingParams = SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return record


def demo_reference() -> Any:
    from heretic_tui.core.models.demo import ensure_demo_model

    return parse_model_reference(str(ensure_demo_model()), allow_trial=False)


async def collect(engine: VllmEngine, request: CompletionRequest, outcome: CompletionOutcome) -> list[str]:
    return [piece async for piece in engine.stream(request, outcome)]


def test_vllm_is_asked_for_the_model_and_its_output_streamed_as_deltas(fake_vllm: FakeVllm,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    reference = demo_reference()
    lines: list[str] = []
    engine = load_engine(reference, Settings(), lines.append, vllm_models=2)
    assert isinstance(engine, VllmEngine) and engine.engine_name == ENGINE_VLLM
    assert fake_vllm.engine_arguments["model"] == reference.location
    assert fake_vllm.engine_arguments["gpu_memory_utilization"] == pytest.approx(engines.VLLM_MEMORY_SHARE / 2), \
        "two vLLM models of one server split its share of the GPU"
    assert lines[0] == (f"{reference.label} is served by the vllm engine: vLLM is installed and a CUDA GPU is "
                        "visible")

    outcome = CompletionOutcome()
    request = CompletionRequest(messages=[{"role": "user", "content": "Say hello"}], max_tokens=3, temperature=0.5,
                                top_p=0.9, stop=("END",), seed=7)
    pieces = asyncio.run(collect(engine, request, outcome))
    assert pieces == ["Sure", ", here", " it is."], "vLLM's cumulative texts become the pieces added each time"
    assert "Say hello" in fake_vllm.prompts[0], "the conversation is rendered through the model's chat template"
    assert fake_vllm.sampling == [{"max_tokens": 3, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "seed": 7}]
    assert (outcome.finish_reason, outcome.prompt_tokens, outcome.completion_tokens) == (FINISH_LENGTH, 5, 3)

    fake_vllm.finish_reason = "stop"
    outcome = CompletionOutcome()
    asyncio.run(collect(engine, CompletionRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=9),
                        outcome))
    assert outcome.finish_reason == FINISH_STOP
    assert fake_vllm.sampling[-1]["stop"] is None, "no stop sequences is vLLM's None, not an empty list"


@pytest.mark.parametrize(("installed", "cuda", "engine", "why"), [
    (True, True, ENGINE_VLLM, "vLLM is installed and a CUDA GPU is visible"),
    (True, False, ENGINE_TRANSFORMERS, "vLLM is installed but no CUDA GPU is visible"),
    (False, True, ENGINE_TRANSFORMERS, "vLLM is not installed"),
])
def test_auto_says_why_it_chose(monkeypatch: pytest.MonkeyPatch, installed: bool, cuda: bool, engine: str,
                                why: str) -> None:
    monkeypatch.setattr(engines, "vllm_installed", lambda: installed)
    chosen, reason = engine_choice(parse_model_reference("owner/model", allow_trial=False), Settings(), lambda: cuda)
    assert chosen == engine and reason.startswith(why)


def test_a_trial_is_never_given_to_vllm_and_the_log_says_so(fake_vllm: FakeVllm) -> None:
    settings = Settings()
    settings.serve.serve_engine = "vllm"
    trial = parse_model_reference("/runs/x#3")
    chosen, reason = engine_choice(trial, settings, lambda: True)
    assert chosen == ENGINE_TRANSFORMERS and "applied in memory" in reason and "export it" in reason
