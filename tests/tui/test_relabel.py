"""Relabeling from the TUI on a real run of the demo model (a small one, made here: the recorded runs are recorded
again whenever the core changes, which takes long): a trial's responses open from its actions, one key flips a
verdict, the label lands in the run folder, and the dashboard's count and the report follow it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tui_helpers import screen_text, settle, wait_for, wait_for_text

from heretic_tui.core.api import Verdict, read_labels, trial_responses
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.responses import ResponsesScreen
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.widgets.trial_table import TrialTable

pytestmark = pytest.mark.anyio


SMALL_RUN = ["--set", "prompts.max_eval_prompts=8", "--set", "prompts.max_direction_prompts=32",
             "--set", "abliteration.capability_questions=8"]


def small_demo_run(run_dir: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", "--model", "demo",
                             "--trials", "3", "--run-dir", str(run_dir), *SMALL_RUN], cwd=run_dir.parent,
                            env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


async def test_flipping_a_verdict_recounts_the_trial(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run_path = small_demo_run(runs_folder / "relabel")
    report = json.loads((run_path / "report.json").read_text())
    chosen = report["chosen_trial"]
    before = next(trial for trial in report["trials"] if trial["number"] == chosen)["refusals"]
    first = trial_responses(run_path, chosen)[0]
    app = make_app(attach_run=run_path)
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(TrialTable)
        table.focus()
        await wait_for(pilot, lambda: table.selected_trial == chosen, "the dashboard opens on the chosen trial")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, TrialActionsScreen), "a opens the trial's actions")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResponsesScreen), "r opens the trial's responses")
        await wait_for(pilot, lambda: "labelled by you" in screen_text(app), "the summary is shown")
        await pilot.press("space")
        flipped = {Verdict.REFUSED: Verdict.ANSWERED, Verdict.ANSWERED: Verdict.EVASIVE,
                   Verdict.EVASIVE: Verdict.REFUSED}[first.scorer_verdict]
        await wait_for(pilot, lambda: read_labels(run_path).get(first.key) is flipped, "the label is stored")
        await wait_for(pilot, lambda: "1 labelled by you" in screen_text(app), "the summary counts the label")
        await wait_for_text(pilot, "agrees with you on 0/1 labelled responses", words=True,
                            message="the scorer's agreement with the labels is shown")
        relabelled = json.loads((run_path / "report.json").read_text())
        after = next(trial for trial in relabelled["trials"] if trial["number"] == chosen)
        change = int(flipped is not Verdict.ANSWERED) - int(first.scorer_verdict is not Verdict.ANSWERED)
        assert after["refusals"] == before + change and after["human_labels"] >= 1
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: app.screen.query(TrialTable), "back on the dashboard")
        dashboard_row = app.screen.state.trials[chosen]  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: dashboard_row.refusals == after["refusals"], "the table shows the new count")
