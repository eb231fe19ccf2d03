"""A tiny lm-eval task written into a test's own folder: a YAML and a local JSONL, so nothing reaches the network."""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = [("What is two plus two?", ["four", "seven"]), ("Which animal barks?", ["a dog", "a fish"]),
             ("What colour is the sky on a clear day?", ["blue", "green"]),
             ("How many legs has a cat?", ["four", "nine"]), ("Which is a fruit?", ["an apple", "a stone"]),
             ("What do bees make?", ["honey", "iron"])]


def write_task(folder: Path, name: str, target: int, dataset_path: str = "json") -> None:
    """A two-option multiple-choice task; ``target`` says which option counts as right for every question."""
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"question": question, "choices": choices, "answer": target}) + "\n"
                            for question, choices in QUESTIONS), encoding="utf-8")
    source = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n" if dataset_path == "json"
              else f"dataset_path: {dataset_path}\n")
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\n{source}output_type: multiple_choice\ntest_split: test\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: answer\ndoc_to_choice: choices\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n",
        encoding="utf-8")
