"""Plans that cannot learn are flagged with the fix (plan event, warnings, report, headless output), and a finished
run whose validation loss did not move is a warning, not a silent success."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainingArguments

from heretic_tui.cli.main import main
from heretic_tui.core.finetuning.evaluation import validation_loss_problem
from heretic_tui.core.finetuning.plan import (
    MemoryEstimate,
    TrainingPlan,
    learning_rate_ever_positive,
    schedule_problems,
)
from heretic_tui.core.runs.events import JobWarning, Metrics
from finetune_helpers import FACTS, finetune_settings, run_in_process


def schedule(tmp_path: Path, scheduler: str = "cosine", learning_rate: float = 2e-4,
             warmup: float = 0.03) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), learning_rate=learning_rate, warmup_steps=warmup,
                             lr_scheduler_type=scheduler, report_to="none", use_cpu=True)


@pytest.mark.parametrize("scheduler", ["cosine", "linear", "constant_with_warmup"])
def test_a_warmup_that_covers_a_one_step_run_leaves_the_rate_at_zero(tmp_path: Path, scheduler: str) -> None:
    arguments = schedule(tmp_path, scheduler)
    assert arguments.get_warmup_steps(1) == 1
    assert not learning_rate_ever_positive(arguments, 1)
    assert learning_rate_ever_positive(arguments, 2)
    assert learning_rate_ever_positive(schedule(tmp_path, scheduler, warmup=0.0), 1)
    assert not learning_rate_ever_positive(schedule(tmp_path, scheduler, learning_rate=0.0), 500)


def plan(steps: int, warmup: int, sequences: int, effective_batch: int = 4, learning_rate: float = 2e-4
         ) -> TrainingPlan:
    return TrainingPlan(train_examples=sequences, validation_examples=1, sequences=sequences, tokens=sequences * 20,
                        steps=steps, steps_per_epoch=steps, epochs=1.0, effective_batch=effective_batch,
                        sequence_length=20, trainable_parameters=1, total_parameters=2,
                        memory=MemoryEstimate(0.0, 0.0, 0.0, 0.0), learning_rate=learning_rate,
                        warmup_steps=warmup)


def test_each_schedule_problem_is_named_with_its_fix() -> None:
    assert schedule_problems(plan(steps=100, warmup=3, sequences=400), True) == []
    zero = schedule_problems(plan(steps=1, warmup=1, sequences=8), False)
    assert zero == ["The learning rate is 0 at its single optimizer step: the 1-step warmup starts from 0 and the run "
                    "ends before the rate rises, so no step changes the adapter. Train for more steps "
                    "(finetune.epochs, finetune.max_steps, or more data), or set finetune.warmup_ratio to 0."]
    unset = schedule_problems(plan(steps=50, warmup=0, sequences=400, learning_rate=0.0), False)
    assert len(unset) == 1 and unset[0].startswith("The learning rate is 0 (finetune.learning_rate)")
    assert "e.g. to the default 0.0002" in unset[0]
    warmup = schedule_problems(plan(steps=5, warmup=8, sequences=400), True)
    assert warmup == ["The warmup (8 steps) is as long as the whole run (5 steps), so the learning rate never "
                      "reaches finetune.learning_rate. Lower finetune.warmup_ratio, or train for more steps."]
    small = schedule_problems(plan(steps=30, warmup=1, sequences=3, effective_batch=16), True)
    assert len(small) == 1 and small[0].startswith("There are only 3 training sequences for an effective batch of 16")
    assert "lower finetune.gradient_accumulation" in small[0]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (4.0, 3.0, None),
        (4.426, 4.426, "The validation loss did not move (4.426 before training, 4.426 after)"),
        (4.0, 4.002, "The validation loss did not move"),
        (4.0, 4.5, "The validation loss rose from 4 to 4.5"),
        (4.0, float("nan"), "is not a finite number"),
        (None, 3.0, None),
    ],
)
def test_a_validation_loss_that_did_not_improve_is_a_problem(before: float | None, after: float,
                                                             expected: str | None) -> None:
    problem = validation_loss_problem(before, after)
    assert (problem is None) if expected is None else (problem is not None and expected in problem), problem


@pytest.fixture
def two_small_files(tmp_path: Path) -> list[str]:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(" ".join(FACTS[:3]), encoding="utf-8")
    second.write_text(" ".join(FACTS[3:]), encoding="utf-8")
    return [str(first), str(second)]


QUICK_PRESET = dict(max_steps=0, epochs=1.0, lora_rank=8, learning_rate=3e-4, warmup_ratio=0.03,
                    per_device_batch_size=4, gradient_accumulation=4, chunk_tokens=256, chunk_overlap=32)
"""The wizard's Quick preset on the default schedule (tui/finetune_choices.py), which trained one step at rate 0."""


def test_the_quick_preset_on_two_small_files_is_flagged_not_a_silent_success(tiny_model: Path, tmp_path: Path,
                                                                            two_small_files: list[str]) -> None:
    summary, run_directory = run_in_process(
        finetune_settings(tiny_model, two_small_files, training_mode="text", **QUICK_PRESET), tmp_path)
    events = run_directory.read_events()
    plan_values = next(item.values for item in events if isinstance(item, Metrics) and item.name == "plan")
    assert plan_values["steps"] == 1 and plan_values["warmup_steps"] == 1
    problems = plan_values["problems"]
    assert len(problems) == 2, problems
    assert problems[0].startswith("The learning rate is 0 at its single optimizer step: the 1-step warmup")
    assert problems[1].startswith("There is only 1 training sequence for an effective batch of 16")
    warnings = [item.message for item in events if isinstance(item, JobWarning)]
    assert [f"plan: {problem}" for problem in problems] == warnings[:2]
    assert summary["eval_loss_after"] == summary["eval_loss_before"]
    assert warnings[2].startswith("The validation loss did not move")
    report = run_directory.read_report()
    assert report["warnings"] == summary["warnings"] == problems + [warnings[2]]
    assert report["plan"]["problems"] == problems


@pytest.mark.slow
def test_headless_output_shows_the_plan_problems_and_the_final_warnings(tiny_model: Path, tmp_path: Path,
                                                                       two_small_files: list[str],
                                                                       capfd: pytest.CaptureFixture[str]) -> None:
    arguments = ["finetune", "--headless", "--model", str(tiny_model), "--run-dir", str(tmp_path / "run"),
                 "--epochs", "1", "--lora-rank", "8", "--learning-rate", "3e-4", "--mode", "text",
                 "--set", "finetune.knowledge_test_tokens=8", "--set", "finetune.gradient_checkpointing=false"]
    for path in two_small_files:
        arguments += ["--data", path]
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    printed = capfd.readouterr().err
    assert exited.value.code == 0, printed
    assert "warning: plan: The learning rate is 0 at its single optimizer step" in printed
    assert "warning: plan: There is only 1 training sequence for an effective batch of 16" in printed
    assert "warning: The validation loss did not move" in printed
    assert "problems" not in printed.split("plan: train_examples", 1)[1].splitlines()[0]
    summary = printed.split("finished with 3 warnings (report.json 'warnings'):\n", 1)[1]
    assert summary.startswith("  - The learning rate is 0 at its single optimizer step")
