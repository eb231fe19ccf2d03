"""Knowledge injection on tiny models: grounded synthesis, held-out questions, retention share, the knowledge report
and early stopping."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from finetune_helpers import FACTS, finetune_settings, run_in_process
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.finetuning.data import prepare_data
from heretic_tui.core.finetuning.knowledge import answer_matches, read_questions
from heretic_tui.core.finetuning.plan import schedule_problems
from heretic_tui.core.finetuning.retention import GENERAL_PROMPTS, mix_retention, retention_count
from heretic_tui.core.finetuning.synthesis import (
    RECIPE_MODEL,
    PROBE_QUESTIONS,
    RECIPE_TEMPLATE,
    Fact,
    is_grounded,
    passage_pairs,
    synthesize,
    template_pairs,
)
from test_finetune_plan import plan

CHUNK = "The capital of Zorbia is Quellton. The tower of Quellton was built by the engineer Mira Vance."


def user_turns(rows: list[dict]) -> set[str]:
    return {turn["content"] for row in rows for turn in row.get("prompt", row.get("messages", []))
            if turn["role"] == "user"}


def test_synthesis_keeps_grounded_answers_and_drops_the_rest() -> None:
    facts = [Fact(sentence, CHUNK, "Zorbia", "zorbia.txt") for sentence in CHUNK.split(". ")]

    def generate(prompts: list[list[dict[str, str]]]) -> list[str]:
        replies = []
        for prompt in prompts:
            content = prompt[-1]["content"]
            if "Sentence:" in content:
                replies.append("Question: Who built the tower of Quellton?" if "Vance" in content.split(
                    "Sentence:")[1] else "What is the capital of Zorbia?")
            elif "capital" in content.split("Question:")[1]:
                replies.append("The capital of Zorbia is Paris, a city of 90 bridges.")
            else:
                replies.append("Answer: The engineer Mira Vance built it.")
        return replies

    pairs, summary = synthesize(facts, 2, seed=3, generate=generate)
    model_pairs = [pair for pair in pairs if pair.recipe == RECIPE_MODEL]
    assert model_pairs and all(pair.answer == "The engineer Mira Vance built it." for pair in model_pairs)
    assert all(pair.question == "Who built the tower of Quellton?" for pair in model_pairs)
    assert summary["ungrounded_dropped"] == 2 and summary["model_pairs"] == 1
    fallback = [pair for pair in pairs if pair.recipe == RECIPE_TEMPLATE]
    assert fallback and {pair.fact for pair in fallback} == {0}, "the fact left uncovered gets template questions"
    assert all(pair.key in CHUNK and pair.key not in pair.question for pair in fallback)
    assert "template fallback for 1 facts" in summary["recipe"]
    assert not is_grounded("Paris", CHUNK) and not is_grounded("Quellton has 9 towers", CHUNK)
    assert is_grounded("Mira Vance built the tower.", CHUNK)


def test_questions_about_the_prompt_instead_of_the_fact_are_dropped_and_the_fact_gets_template_questions() -> None:
    facts = [Fact(sentence, CHUNK, "Zorbia", "zorbia.txt") for sentence in CHUNK.split(". ")]
    echoes = iter(["What is the answer to this question?", "Is this sentence a fact?", "What a great question?",
                   "What is that thing over there?"])

    def generate(prompts: list[list[dict[str, str]]]) -> list[str]:
        assert all(CHUNK not in prompt[-1]["content"] for prompt in prompts), "a question prompt is one sentence"
        return [next(echoes) if "Sentence:" in prompt[-1]["content"] else "Quellton." for prompt in prompts]

    pairs, summary = synthesize(facts, 2, seed=3, generate=generate)
    assert summary["off_topic_questions_dropped"] == 4 and summary["model_pairs"] == 0
    assert {pair.recipe for pair in pairs} == {RECIPE_TEMPLATE} and {pair.fact for pair in pairs} == {0, 1}


def test_a_generator_whose_first_questions_are_all_unusable_is_given_up() -> None:
    facts = [Fact(f"The tower number {number} of Quellton was built by Mira Vance.", CHUNK, "Zorbia", "z.txt")
             for number in range(12)]
    asked: list[int] = []

    def generate(prompts: list[list[dict[str, str]]]) -> list[str]:
        asked.append(len(prompts))
        return ["What is the answer to this question?"] * len(prompts)

    pairs, summary = synthesize(facts, 2, seed=3, generate=generate)
    assert asked == [PROBE_QUESTIONS] and summary["questions_not_asked"] == 24 - PROBE_QUESTIONS
    assert "first 16 questions were all unusable" in summary["recipe"]
    assert {pair.fact for pair in pairs} == set(range(12)) and summary["template_pairs"] == len(pairs)


def test_template_questions_ask_for_a_fact_from_several_sides() -> None:
    sentence = "The tower of Quellton was built by the engineer Mira Vance."
    pairs = template_pairs(Fact(sentence, CHUNK, "Zorbia", "zorbia.txt"), 7, 4, random.Random(1))
    assert len(pairs) == 4 and all(pair.answer == sentence and pair.fact == 7 for pair in pairs)
    cue = pairs[0].question
    assert "Quellton" not in cue and "Vance" not in cue and "tower" in cue, "a cue question hides the names"
    assert pairs[0].key == "Quellton"
    assert any("____" in pair.question or " what" in pair.question for pair in pairs[1:3]), "cloze questions"
    assert pairs[3].question.endswith("about Quellton?") and pairs[3].key == sentence, "from a name to the fact"


def test_synthesis_is_deterministic_and_without_a_generator_says_it_is_the_template_fallback() -> None:
    facts = [Fact(sentence, " ".join(FACTS), "Zorbia", "zorbia.txt") for sentence in FACTS]
    first, summary = synthesize(facts, 3, seed=5, generate=None)
    again, _ = synthesize(facts, 3, seed=5, generate=None)
    assert first == again and summary["recipe"] == "template fallback (no question generator usable)"
    assert len({pair.fact for pair in first}) == len(FACTS)
    assert max(sum(pair.fact == fact for pair in first) for fact in range(len(FACTS))) >= 2, "paraphrases per fact"


def test_passage_questions_answer_with_each_window_once_per_question_and_never_a_heading() -> None:
    windows = ["# Zorbia\n\nThe capital of Zorbia is Quellton. It lies on a river.", "It has a tower. It is tall."]
    facts = [Fact(sentence, window, "Zorbia", "zorbia.md") for window in windows
             for sentence in window.split(". ")]
    pairs = passage_pairs(facts, 2, len(facts))
    assert [pair.answer for pair in pairs] == [
        "The capital of Zorbia is Quellton. It lies on a river."] * 2 + ["It has a tower. It is tall."] * 2
    assert len({pair.question for pair in pairs[:2]}) == 2, "each question of a window is phrased differently"
    assert all("Zorbia" in pair.question for pair in pairs)
    assert {pair.fact for pair in pairs} == {len(facts), len(facts) + 1}, "after every sentence's fact index"
    assert passage_pairs(facts, 0, len(facts)) == []


def test_held_out_questions_are_never_trained_on_and_retention_holds_its_share(tiny_model: Path,
                                                                                documents: Path,
                                                                                tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    chat = tmp_path / "general.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Hello {number} ?"},
                                                     {"role": "assistant", "content": "Yes ."}]}) + "\n"
                            for number in range(3)), encoding="utf-8")
    settings = finetune_settings(tiny_model, [str(documents)], question_generator="template", held_out_questions=4,
                                 retention_share=0.25, retention_data=[str(chat)], passage_questions=0).finetune
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    prepared = prepare_data(settings, tokenizer, (24, 6))
    held_out = prepared.summary["held_out"]
    assert prepared.mode == "instruct" and len(held_out) == 4
    trained = user_turns(prepared.train) | user_turns(prepared.validation)
    assert not {row["question"] for row in held_out} & trained
    rows = prepared.train + prepared.validation
    general = [row for row in rows if row["prompt"][-1]["content"].startswith("Hello")]
    assert len(general) == retention_count(len(rows) - len(general), 0.25)
    assert abs(len(general) / len(rows) - 0.25) < 0.05
    assert prepared.summary["retention"]["examples"] == len(general)
    assert "template fallback" in prepared.summary["recipe"]
    with_passages = prepare_data(replace(settings, passage_questions=2), tokenizer, (24, 6))
    assert with_passages.summary["held_out"] == held_out, "passage questions are never held out"
    assert with_passages.summary["synthesis"]["passage_pairs"] > 0
    assert len(with_passages.train) + len(with_passages.validation) > len(rows)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "What is the capital?", "answer": "Quellton"}) + "\n",
                         encoding="utf-8")
    asked_from_file = prepare_data(replace(settings, knowledge_questions=str(questions)), tokenizer, (24, 6))
    assert asked_from_file.summary["held_out"] == [], "with a questions file no synthesized pair is held out"
    assert len(asked_from_file.train) + len(asked_from_file.validation) > len(rows)


def test_the_built_in_retention_set_answers_only_the_prompts_it_needs(tiny_model: Path, documents: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    import heretic_tui.core.finetuning.data as data_module

    answered: list[str] = []

    def replies(model: object, tokenizer: object, prompts: list[list[dict[str, str]]], tokens: int) -> list[str]:
        answered.extend(prompt[-1]["content"] for prompt in prompts)
        return ["Fine, thank you."] * len(prompts)

    monkeypatch.setattr(data_module, "chat_replies", replies)
    settings = finetune_settings(tiny_model, [str(documents)], question_generator="template", held_out_questions=0,
                                 retention_share=0.1, validation_fraction=0.0).finetune
    prepared = prepare_data(settings, AutoTokenizer.from_pretrained(str(tiny_model)), (24, 6), model=object())
    general = [row for row in prepared.train if row["completion"][0]["content"] == "Fine, thank you."]
    assert 0 < len(answered) == len(set(answered)) == len(general) < len(GENERAL_PROMPTS)
    assert len(general) == retention_count(len(prepared.train) - len(general), 0.1)


def test_retention_mixing_repeats_a_small_set_to_hold_the_share() -> None:
    knowledge = [{"id": number} for number in range(30)]
    mixed = mix_retention(knowledge, [{"general": 1}, {"general": 2}], 0.4, seed=1)
    share = sum("general" in row for row in mixed) / len(mixed)
    assert len(mixed) == 50 and share == pytest.approx(0.4)
    assert mix_retention(knowledge, [{"general": 1}], 0.0, seed=1) == mix_retention(knowledge, [], 0.5, seed=1)


def test_answers_are_judged_by_the_answer_or_an_alias() -> None:
    assert answer_matches("It is Port Ysolde, on the east coast.", "Port Ysolde")
    assert answer_matches("About 310000 people.", "310,000", ["310000"])
    assert not answer_matches("It is Ysoldeport.", "Port Ysolde")
    assert answer_matches("The tower was built by the engineer Mira Vance in Quellton.",
                          "The tower of Quellton was built by the engineer Mira Vance.")


def test_a_bad_questions_file_names_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text('{"question": "Where?", "answer": "Here"}\n{"question": "Who?"}\n', encoding="utf-8")
    with pytest.raises(UserInputError, match="Line 2 of the knowledge questions file"):
        read_questions(str(path))
    with pytest.raises(UserInputError, match="cannot be read"):
        read_questions(str(tmp_path / "missing.jsonl"))


def test_the_plan_warns_about_over_and_under_training() -> None:
    over = schedule_problems(replace(plan(steps=400, warmup=0, sequences=12), epochs=400.0), True)
    assert any("over-training" in problem and "finetune.early_stopping_patience" in problem for problem in over)
    under = schedule_problems(replace(plan(steps=2, warmup=0, sequences=400), epochs=0.02), True)
    assert any("under-training" in problem and "finetune.max_steps" in problem for problem in under)


def test_the_knowledge_report_has_before_and_after_for_every_question_and_early_stopping_stops(
        tiny_model: Path, documents: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"question": "What is the capital of Zorbia ?", "answer": "Quellton"}) + "\n"
        + json.dumps({"question": "Who built the tower ?", "answer": "Mira Vance", "aliases": ["Vance"]}) + "\n",
        encoding="utf-8")
    settings = finetune_settings(tiny_model, [str(documents)], knowledge_questions=str(questions),
                                 question_generator="template", learning_rate=0.0, early_stopping_patience=1,
                                 max_steps=24, checkpoint_steps=8)
    summary, run_directory = run_in_process(settings, tmp_path)
    report = run_directory.read_report()
    items = report["knowledge_test"]["items"]
    assert [item["prompt"] for item in items] == ["What is the capital of Zorbia ?", "Who built the tower ?"]
    assert all(isinstance(item["correct_before"], bool) and isinstance(item["correct_after"], bool)
               and "before" in item and "after" in item for item in items)
    assert report["knowledge_test"]["accuracy_before"] is not None
    assert report["knowledge_test"]["accuracy_after"] is not None
    assert report["general_perplexity_before"] > 1 and report["general_perplexity_after"] > 1
    assert report["steps"] < 24, "a validation loss that never improves stops the run after the patience"
