"""From sources to examples: windows, pairs, cleaning, the split, the preview, and the assistant mask."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from heretic_tui.core.finetuning.chat_masks import tokenize_with_assistant_mask, trl_can_mask
from heretic_tui.core.finetuning.checkpoints import checkpoints_to_keep, last_checkpoint, remove_incomplete_checkpoints
from heretic_tui.core.finetuning.data import clean_text, prepare_data, preview, remove_duplicates, split_examples
from heretic_tui.core.finetuning.examples import (
    PAIR_TEMPLATES,
    build_examples,
    resolve_mode,
    split_passage,
    token_windows,
)
from heretic_tui.core.finetuning.plan import steps_for
from heretic_tui.core.finetuning.sources import read_sources
from finetune_helpers import FACTS, chat_rows, finetune_settings, write_jsonl


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    return AutoTokenizer.from_pretrained(str(tiny_model))


def test_token_windows_overlap_and_cover_the_text(tokenizer) -> None:
    text = " ".join(FACTS)
    windows = token_windows(tokenizer, text, 10, 4)
    lengths = [len(tokenizer(window, add_special_tokens=False)["input_ids"]) for window in windows]
    assert all(length <= 10 for length in lengths) and lengths[0] == 10
    first, second = (tokenizer(window, add_special_tokens=False)["input_ids"] for window in windows[:2])
    assert first[-4:] == second[:4]
    assert windows[0] == text[:len(windows[0])]
    assert text.endswith(windows[-1])


def test_documents_become_pairs_that_continue_the_passage(tokenizer, documents: Path) -> None:
    data = read_sources([str(documents)])
    examples = build_examples(data, "instruct", tokenizer, 24, 6, seed=1)
    assert examples and all(set(example) == {"prompt", "completion"} for example in examples)
    first = examples[0]
    prompt, answer = first["prompt"][0]["content"], first["completion"][0]["content"]
    assert any(template.split("{title}")[0] in prompt for template in PAIR_TEMPLATES)
    assert first["completion"][0]["role"] == "assistant" and answer
    assert build_examples(data, "instruct", tokenizer, 24, 6, seed=1) == examples


def test_split_passage_prefers_a_sentence_boundary() -> None:
    head, rest = split_passage(" ".join(FACTS[:3]))
    assert head == FACTS[0] and rest == " ".join(FACTS[1:3])
    assert split_passage("too short") is None


def test_modes_are_resolved_from_the_richest_format(tmp_path: Path, documents: Path) -> None:
    chat = write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    instructions = write_jsonl(tmp_path / "pairs.jsonl", [{"instruction": "Say hi.", "output": "Hi."}])
    assert resolve_mode("auto", read_sources([str(documents)])) == "text"
    assert resolve_mode("auto", read_sources([str(documents), str(instructions)])) == "instruct"
    assert resolve_mode("auto", read_sources([str(instructions), str(chat)])) == "chat"
    assert resolve_mode("text", read_sources([str(chat)])) == "text"


def test_chat_rows_keep_every_turn_and_instruct_rows_split_off_the_last_answer(tokenizer, tmp_path: Path) -> None:
    data = read_sources([str(write_jsonl(tmp_path / "chat.jsonl", chat_rows()))])
    chat = build_examples(data, "chat", tokenizer, 24, 6, seed=0)
    instruct = build_examples(data, "instruct", tokenizer, 24, 6, seed=0)
    text = build_examples(data, "text", tokenizer, 24, 6, seed=0)
    assert chat[3]["messages"] == chat_rows()[3]["messages"]
    assert instruct[3]["prompt"] == chat_rows()[3]["messages"][:-1]
    assert instruct[3]["completion"] == chat_rows()[3]["messages"][-1:]
    assert text[0]["text"].startswith("<|user|> What is the capital of Zorbia?")


def test_cleaning_removes_control_characters_and_blank_runs() -> None:
    assert clean_text("a\x00b\u200b\r\nc  \n\n\n\n\nd\x7f") == "ab\nc\n\nd"


def test_duplicates_are_removed_and_the_split_is_seeded() -> None:
    examples = [{"text": str(number)} for number in range(20)] + [{"text": "3"}]
    unique, removed = remove_duplicates(examples)
    assert removed == 1 and len(unique) == 20
    train, validation = split_examples(unique, 0.1, seed=7)
    assert len(train) == 18 and len(validation) == 2
    assert split_examples(unique, 0.1, seed=7) == (train, validation)
    assert split_examples(unique, 0.1, seed=8) != (train, validation)
    assert split_examples(unique[:2], 0.1, seed=7)[1] and not split_examples(unique[:1], 0.1, seed=7)[1]


def test_prepared_data_previews_through_the_chat_template(tiny_model: Path, tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    settings = finetune_settings(tiny_model, [str(path)], preview_examples=2)
    prepared = prepare_data(settings.finetune, tokenizer, (24, 6))
    assert prepared.mode == "chat"
    assert len(prepared.train) + len(prepared.validation) == len(chat_rows())
    lines = preview(tokenizer, prepared.train, 2)
    assert len(lines) == 2 and all(line.startswith("<|") and "<|assistant|>" in line for line in lines)
    prepared.save(tmp_path / "data")
    reloaded = type(prepared).load(tmp_path / "data")
    assert (reloaded.mode, reloaded.train, reloaded.validation) == (prepared.mode, prepared.train, prepared.validation)
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == ["summary.json", "train.jsonl",
                                                                         "validation.jsonl"]


def test_prepared_data_that_was_cut_short_or_damaged_is_prepared_again(tiny_model: Path, tokenizer,
                                                                        tmp_path: Path) -> None:
    """A resume trusts data/ only when it reads back whole; otherwise the sources are read again (None)."""
    path = write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    prepared = prepare_data(finetune_settings(tiny_model, [str(path)]).finetune, tokenizer, (24, 6))
    folder = tmp_path / "data"
    prepared.save(folder)
    train = folder / "train.jsonl"
    train.write_text(train.read_text()[:-20], encoding="utf-8")
    assert type(prepared).load(folder) is None
    prepared.save(folder)
    train.write_text('"a string, not an example"\n', encoding="utf-8")
    assert type(prepared).load(folder) is None
    prepared.save(folder)
    (folder / "summary.json").write_text('{"mode": "ch', encoding="utf-8")
    assert type(prepared).load(folder) is None
    (folder / "summary.json").unlink()
    assert type(prepared).load(folder) is None


def test_our_assistant_mask_matches_trls_on_a_marked_template(tiny_model: Path, marked_model: Path) -> None:
    plain = AutoTokenizer.from_pretrained(str(tiny_model))
    marked = AutoTokenizer.from_pretrained(str(marked_model))
    assert not trl_can_mask(plain) and trl_can_mask(marked)
    messages = chat_rows()[3]["messages"]
    ours = tokenize_with_assistant_mask(plain, messages)
    theirs = marked.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert ours["input_ids"] == list(theirs["input_ids"])
    assert ours["assistant_masks"] == list(theirs["assistant_masks"])
    learned = plain.decode([token for token, bit in zip(ours["input_ids"], ours["assistant_masks"]) if bit])
    assert learned == ("The engineer Mira Vance built the tower . <|end|> The tower is in Quellton . <|end|>")


def test_checkpoints_keep_the_best_by_validation_loss_and_the_newest(tmp_path: Path) -> None:
    assert checkpoints_to_keep([10, 20, 30, 40], {10: 2.0, 20: 1.0, 30: 1.5, 40: 1.8}, keep=2) == {20, 30, 40}
    assert checkpoints_to_keep([10, 20, 30], {}, keep=2) == {20, 30}
    assert checkpoints_to_keep([10, 20, 30], {10: 0.5, 20: 0.7, 30: 0.9}, keep=1) == {10, 30}
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    (tmp_path / "checkpoint-15").mkdir()
    assert remove_incomplete_checkpoints(tmp_path) == [tmp_path / "checkpoint-15"]
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_steps_are_counted_as_the_trainer_counts_them() -> None:
    assert steps_for(100, 4, 4, 3.0, 0) == (21, 7)
    assert steps_for(100, 4, 4, 3.0, 50) == (50, 7)
    assert steps_for(3, 8, 1, 0.5, 0) == (1, 1)


def test_packed_rows_keep_examples_apart(tiny_model: Path, tokenizer) -> None:
    """Logits of an example packed after another equal its logits alone (TRL trains with use_cache=False)."""
    import torch
    from transformers import AutoModelForCausalLM

    from heretic_tui.core.finetuning.packing import PackedRowsCollator

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model)).eval()
    first, second = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in FACTS[:2])
    row = {"input_ids": first + second, "labels": first + second, "seq_lengths": [len(first), len(second)]}
    alone = {"input_ids": second, "labels": second, "seq_lengths": [len(second)]}
    batch = PackedRowsCollator(tokenizer.pad_token_id)([row, alone])
    assert "attention_mask" not in batch
    assert batch["position_ids"][0].tolist()[len(first)] == 0 and batch["labels"][0, len(first)] == -100
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        reference = model(input_ids=torch.tensor([second])).logits[0]
    assert torch.allclose(logits[0, len(first):], reference, atol=1e-5)
    assert torch.allclose(logits[1, :len(second)], reference, atol=1e-5)
