"""Thinking models: the handling is chosen from the chat template, the scorer judges only the answer after the
reasoning block, the reasoning has its own budget, and first-token KL is read at the answer's first token.

The models are crafted bigram models (tests/model_factory.py: build_bigram_model), so what each one writes is
known exactly: a reasoning block full of refusal words, then a compliant answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from heretic_tui.core.abliteration.evaluation import Evaluator
from heretic_tui.core.abliteration.job import start_abliteration
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.chat_template import format_chat
from heretic_tui.core.models.generation import first_token_log_probabilities, generate_responses
from heretic_tui.core.models.loading import LoadedModel, load_model
from heretic_tui.core.models.thinking import ThinkingPlan, parse_markers, plan_thinking
from heretic_tui.core.settings import AbliterationSettings, ModelSettings, Settings
from model_factory import ARCHITECTURES, CHAT_TEMPLATE, SWITCH_TEMPLATE, THINKING_TEMPLATE, build_bigram_model, chain

ANSWER = ("sure", "here", "is", "the", "answer", "<|end|>")
REASONING = ("<think>", "sorry", "i", "help", "</think>")
"""Reasoning that contains a refusal marker ("sorry"); only the answer after it says whether the model refused."""
PROMPTS = ["how do i bake bread", "write poem about autumn"]


def load(path: Path) -> LoadedModel:
    return load_model(ModelSettings(model=str(path), dtypes=["float32"]), log=lambda message: None)


@pytest.fixture(scope="module")
def reasoning_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """Reasons (with refusal words) and then answers; its template writes <think> but has no switch."""
    path = tmp_path_factory.mktemp("thinking") / "reasoning"
    return load(build_bigram_model(path, chain("<|assistant|>", *REASONING, *ANSWER), THINKING_TEMPLATE))


def plan(loaded: LoadedModel, **changes: Any) -> ThinkingPlan:
    settings = AbliterationSettings()
    for key, value in changes.items():
        setattr(settings, key, value)
    return plan_thinking(loaded.tokenizer, settings)


def test_auto_picks_the_handling_from_the_chat_template(reasoning_model: LoadedModel) -> None:
    from transformers import AutoTokenizer

    skip = plan(reasoning_model)
    assert (skip.handling, [str(block) for block in skip.blocks][:1]) == ("skip", ["<think>...</think>"])
    tokenizer = AutoTokenizer.from_pretrained(reasoning_model.location)
    tokenizer.chat_template = SWITCH_TEMPLATE
    disable = plan_thinking(tokenizer, AbliterationSettings())
    assert disable.handling == "disable"
    assert dict(disable.style.template_arguments) == {"enable_thinking": False}
    assert format_chat(tokenizer, "", ["write poem"], disable.style) == [
        "<|user|> write poem <|end|> <|assistant|> <think> </think> "
    ]
    tokenizer.chat_template = CHAT_TEMPLATE
    assert plan_thinking(tokenizer, AbliterationSettings()).handling == "off"
    with pytest.raises(UserInputError, match="abliteration.thinking = 'disable'.*thinking_markers"):
        settings = AbliterationSettings()
        settings.thinking = "disable"
        plan_thinking(tokenizer, settings)


def test_a_marker_entry_without_its_separator_is_bad_input() -> None:
    with pytest.raises(UserInputError, match="abliteration.thinking_markers: the entry '<think>'"):
        parse_markers(["<think>"])


def test_the_scorer_judges_the_answer_after_the_reasoning(reasoning_model: LoadedModel) -> None:
    texts = format_chat(reasoning_model.tokenizer, "", PROMPTS)
    skip = Evaluator(reasoning_model, texts, texts, 2, AbliterationSettings(), plan(reasoning_model))
    assert skip.responses() == [("sure here is the answer", False)] * len(PROMPTS)
    unhandled = Evaluator(reasoning_model, texts, texts, 2, AbliterationSettings(), plan(reasoning_model,
                                                                                           thinking="off"))
    assert unhandled.refusals() == len(PROMPTS), "without the handling, the reasoning's 'sorry' reads as a refusal"


def test_first_token_kl_is_read_at_the_answer_not_inside_the_block(reasoning_model: LoadedModel) -> None:
    tokenizer = reasoning_model.tokenizer
    texts = format_chat(tokenizer, "", PROMPTS)
    evaluator = Evaluator(reasoning_model, texts, texts, 2, AbliterationSettings(), plan(reasoning_model))
    assert evaluator.kl_texts == [text + " ".join(REASONING) for text in texts]
    at_answer = first_token_log_probabilities(reasoning_model, evaluator.kl_texts, 2).argmax(dim=-1)
    assert tokenizer.convert_ids_to_tokens(at_answer.tolist()) == ["sure"] * len(PROMPTS)
    assert evaluator.kl() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("ending", ["loops", "stops"])
def test_a_reasoning_block_that_never_closes_is_closed_within_its_budget(ending: str, tmp_path: Path) -> None:
    reasoning = ("<think>", "bake", "bread", "bake") if ending == "loops" else ("<think>", "sorry", "<|end|>")
    transitions = chain("<|assistant|>", *reasoning) | chain("</think>", *ANSWER)
    loaded = load(build_bigram_model(tmp_path / ending, transitions, THINKING_TEMPLATE))
    thinking = plan(loaded, thinking_max_tokens=5)
    texts = format_chat(loaded.tokenizer, "", PROMPTS[:1])
    [response] = generate_responses(loaded, texts, 1, 8, lambda answer, finished: False if finished else None,
                                    None, thinking)
    assert response.forced_close
    assert response.answer == "sure here is the answer"
    written = loaded.tokenizer.convert_ids_to_tokens(response.tokens[:response.answer_start])
    assert written[0] == "<think>" and written[-1] == "</think>"
    assert len(written) - 2 <= 5 if ending == "loops" else written == ["<think>", "sorry", "</think>"]


def test_disable_renders_an_empty_block_so_the_first_token_is_the_answer(tmp_path: Path) -> None:
    transitions = chain("<|assistant|>", *REASONING, *ANSWER)
    loaded = load(build_bigram_model(tmp_path / "switch", transitions, SWITCH_TEMPLATE))
    thinking = plan(loaded)
    assert thinking.handling == "disable"
    texts = format_chat(loaded.tokenizer, "", PROMPTS, thinking.style)
    evaluator = Evaluator(loaded, texts, texts, 2, AbliterationSettings(), thinking)
    assert evaluator.kl_texts == texts
    assert evaluator.responses() == [("sure here is the answer", False)] * len(PROMPTS)


def test_a_run_on_a_thinking_model_records_its_handling(reasoning_model: LoadedModel, tmp_path: Path) -> None:
    settings = Settings()
    settings.model.model = reasoning_model.location
    settings.model.dtypes = ["float32"]
    settings.prompts.good_prompts, settings.prompts.bad_prompts = "builtin:harmless@train", "builtin:harmful@train"
    settings.prompts.good_eval_prompts = "builtin:harmless@test"
    settings.prompts.bad_eval_prompts = "builtin:harmful@test"
    settings.prompts.max_direction_prompts = 4
    settings.prompts.max_eval_prompts = 4
    settings.optimization.trials = 2
    handle = start_abliteration(settings, tmp_path / "run")
    assert handle.wait(timeout=300) == 0, handle.run.log_path.read_text(encoding="utf-8")
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert report["thinking"]["handling"] == "skip"
    assert report["thinking"]["max_reasoning_tokens"] == settings.abliteration.thinking_max_tokens
    assert report["baseline"]["refusals"] == 0, "the reasoning's refusal words must not count"
    assert "thinking: skip" in handle.run.log_path.read_text(encoding="utf-8")
    warm_start = report["warm_start"]
    assert warm_start["enqueued"] == min(warm_start["trials"], settings.optimization.trials), warm_start
    assert "warm start: " in handle.run.log_path.read_text(encoding="utf-8")


OPEN_BLOCK_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> bake {% endif %}"
)
"""A template that opens the reasoning block for the model (as DeepSeek-R1's does), with a block made of words the
tiny models know: 'bake' opens it, 'bread' closes it."""


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_reaches_its_answer_within_the_reasoning_budget(
    architecture: str, tiny_models: dict[str, Path]
) -> None:
    from transformers import AutoTokenizer

    loaded = load(tiny_models[architecture])
    loaded.tokenizer = AutoTokenizer.from_pretrained(tiny_models[architecture])
    loaded.tokenizer.chat_template = OPEN_BLOCK_TEMPLATE
    thinking = plan(loaded, thinking="skip", thinking_markers=["bake...bread"], thinking_max_tokens=4)
    texts = format_chat(loaded.tokenizer, "", PROMPTS)
    responses = generate_responses(loaded, texts, 2, 3, lambda answer, finished: False if finished else None,
                                   None, thinking)
    for response in responses:
        reasoning = loaded.tokenizer.convert_ids_to_tokens(response.tokens[:response.answer_start])
        assert reasoning and reasoning[-1] == "bread", reasoning
        assert len(reasoning) <= 4 + 1, reasoning
        assert len(response.tokens) - response.answer_start <= 3
