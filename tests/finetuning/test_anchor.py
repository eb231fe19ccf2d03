"""The anchor: a KL term to the base model on general text that keeps the fine-tuned model's language where it was,
read from the same network with the adapter off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune_helpers import finetune_settings, many_chat_rows, run_in_process, write_jsonl
from model_factory import build_tokenizer
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.finetuning.anchoring import (
    ANCHOR_TEXT,
    Anchor,
    anchor_divergence,
    anchor_passages,
    anchor_source,
)
from heretic_tui.core.finetuning.sources import Conversation, Document, SourceData
from heretic_tui.core.settings import Settings
from heretic_tui.core.finetuning.retention import GENERAL_TEXT
from heretic_tui.core.runs.events import LogLine, TrainingStep


def test_the_divergence_is_zero_for_the_same_model_and_counts_only_real_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    assert float(anchor_divergence(logits, logits, mask)) == pytest.approx(0.0, abs=1e-6)
    moved = logits.clone()
    moved[1, :2] += 10 * torch.randn(2, 11)
    assert float(anchor_divergence(logits, moved, mask)) == pytest.approx(0.0, abs=1e-6), "padding is not counted"
    moved[0, 0] += 10 * torch.randn(11)
    assert float(anchor_divergence(logits, moved, mask)) > 0.01


def test_the_anchor_passages_are_not_the_perplexity_passages() -> None:
    assert not set(ANCHOR_TEXT) & set(GENERAL_TEXT)
    assert not {text.split(".")[0] for text in ANCHOR_TEXT} & {text.split(".")[0] for text in GENERAL_TEXT}


def test_a_users_anchor_text_is_cut_into_passages_of_the_training_length_that_lose_nothing(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(tmp_path / "tokenizer")
    size = 16
    sentences = [f"the user asked about bread number {number} and the model answered ." for number in range(40)]
    document = Document("notes", "hello .\n\n" + " ".join(sentences), "notes.txt")
    conversation = Conversation((("user", "Hello there"), ("assistant", "Hi! How can I help?")), "chat.jsonl")
    passages = anchor_passages(SourceData([document], [conversation]), tokenizer, size)
    windows, last = passages[:-1], passages[-1]
    assert len(windows) > 1 and last == "Hello there\nHi! How can I help?"
    assert all(len(tokenizer(window, add_special_tokens=False)["input_ids"]) <= size for window in windows)
    assert "".join("".join(windows).split()) == "".join(document.text.split()), "no text is cut off or lost"

    settings = Settings().finetune
    assert anchor_source(settings, tokenizer, size) == (list(ANCHOR_TEXT), f"{len(ANCHOR_TEXT)} built-in passages")
    text = tmp_path / "general.txt"
    text.write_text("the user asked .\n\nthe model answered .", encoding="utf-8")
    settings.anchor_data = [str(text)]
    passages, origin = anchor_source(settings, tokenizer, size)
    assert "".join("".join(passages).split()) == "theuserasked.themodelanswered."
    assert origin == f"{len(passages)} passages from {text}"
    settings.anchor_data = [str(tmp_path / "missing.txt")]
    with pytest.raises(UserInputError) as failure:
        anchor_source(settings, tokenizer, size)
    assert "missing.txt" in str(failure.value)


def drift_from_base(model: Path, adapter: Path) -> float:
    """KL(base || trained) on every anchor passage, measured after training."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), adapter)
    trained.eval()
    anchor = Anchor(tokenizer, 1.0, 64, torch.device("cpu"), per_step=len(ANCHOR_TEXT))
    with torch.no_grad():
        return float(anchor.divergence(trained))


@pytest.mark.slow
def test_an_anchored_fine_tune_moves_less_on_general_text_and_shows_its_divergence(tiny_model: Path,
                                                                                   tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", many_chat_rows(4))
    drifts = {}
    for weight in (0.0, 5.0):
        folder = tmp_path / f"weight-{weight:g}"
        folder.mkdir()
        settings = finetune_settings(tiny_model, [str(data)], max_steps=16, anchor_weight=weight)
        summary, run_directory = run_in_process(settings, folder)
        drifts[weight] = drift_from_base(tiny_model, Path(summary["adapter_dir"]))
        events = run_directory.read_events()
        divergences = [item.anchor_divergence for item in events
                       if isinstance(item, TrainingStep) and item.anchor_divergence is not None]
        logs = " ".join(item.message for item in events if isinstance(item, LogLine))
        if weight:
            assert divergences and all(value >= 0 for value in divergences), "the dashboard gets the anchor's KL"
            assert f"anchored to the base model on general text (weight 5, {len(ANCHOR_TEXT)} built-in passages)" \
                in logs
        else:
            assert not divergences and "anchored" not in logs
    assert drifts[5.0] < 0.5 * drifts[0.0], drifts
