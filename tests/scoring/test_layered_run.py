"""An abliteration run with the layered scorer on the demo model: it completes, checks the chosen trial's capability
against the original's, keeps every trial's responses, and human labels recount the trials, move the Pareto front
and the chosen trial, and survive a resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from heretic_tui.core import api
from heretic_tui.core.abliteration.study import TrialResult, pareto_front

JUDGE_ANSWERS = 'abliteration.judge_answers=["sorry","just","sure"]'
"""Judge replies the demo model's word-level vocabulary knows (it cannot read the default ones)."""

SMALL_RUN = ["--set", "abliteration.refusal_scorer=layered", "--set", JUDGE_ANSWERS,
             "--set", "prompts.max_eval_prompts=12", "--set", "prompts.max_direction_prompts=32",
             "--set", "abliteration.capability_questions=40"]


def abliterate(arguments: list[str], cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", *arguments],
                            cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def front_of(report: dict) -> list[int]:
    return pareto_front([TrialResult(item["number"], item["refusals"], item["kl"], 0.0, 0.0, {})
                         for item in report["trials"]])


def test_layered_run_then_relabel_moves_the_front_and_survives_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    abliterate(["--model", "demo", "--trials", "3", "--run-dir", str(run_dir), *SMALL_RUN], tmp_path)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["scoring"]["scorer"] == "layered" and report["scoring"]["human_labels"] == 0
    capability = report["capability"]
    assert capability["trial_number"] == report["chosen_trial"]
    assert capability["original"]["questions"] == capability["trial"]["questions"] == 40
    change = capability["accuracy_change"]
    assert change["low"] <= change["value"] <= change["high"]
    accuracies = capability["trial"]["multiple_choice_accuracy"] - capability["original"]["multiple_choice_accuracy"]
    assert abs(change["value"] - accuracies) < 1e-9, "the paired mean difference is the difference of accuracies"
    total = report["baseline"]["total"]
    chosen = report["chosen_trial"]
    judged = api.trial_responses(run_dir, chosen)
    assert len(judged) == total and all(item.label is None for item in judged)
    assert all(trial["scorer_refusals"] == trial["refusals"] for trial in report["trials"])

    for item in judged:
        api.label_response(run_dir, item.prompt, item.response, api.Verdict.REFUSED)
    relabelled = json.loads((run_dir / "report.json").read_text())
    entry = next(trial for trial in relabelled["trials"] if trial["number"] == chosen)
    assert entry["refusals"] == total and entry["human_labels"] == total
    assert chosen in relabelled["scoring"]["trials_with_human_labels"]
    assert relabelled["pareto"] == front_of(relabelled)
    if any(trial["refusals"] < total for trial in relabelled["trials"] if trial["number"] != chosen):
        assert relabelled["chosen_trial"] != chosen, "a trial now refusing everything is no longer the choice"
    agreement = api.scorer_agreement(run_dir)
    assert agreement.labelled == len({item.key for item in judged})
    assert agreement.labelled - agreement.agreed == len({item.key for item in judged
                                                         if item.scorer_verdict is not api.Verdict.REFUSED})

    abliterate(["--resume", "--run-dir", str(run_dir), "--trials", "4"], tmp_path)
    resumed = json.loads((run_dir / "report.json").read_text())
    assert len(resumed["trials"]) == 4
    entry = next(trial for trial in resumed["trials"] if trial["number"] == chosen)
    assert entry["refusals"] == total and entry["human_labels"] == total, "labels survive the resume"
    assert resumed["pareto"] == front_of(resumed)
    assert api.relabelled_counts(run_dir, [chosen])[chosen].refusals == total
