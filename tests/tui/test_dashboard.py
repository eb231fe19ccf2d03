"""The dashboard rebuilt from recorded journals and following live ones: endings, cancel, detach, re-attach."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from tui_helpers import screen_text, settle, wait_until
from recorded_runs import START, pareto_front, start_fake_worker, trial_events, trial_result, write_run

from heretic_tui.core.runs.events import ArtifactWritten, JobFinished, JobStarted, Metrics, PhaseFinished, PhaseStarted
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import ConfirmDialog, ValueDialog
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.widgets.pareto_plot import ParetoPlot
from heretic_tui.tui.widgets.trial_table import TrialTable

pytestmark = pytest.mark.anyio


def dashboard(app: HereticApp) -> DashboardScreen:
    assert isinstance(app.screen, DashboardScreen), type(app.screen)
    return app.screen


async def test_finished_run_is_rebuilt_from_its_journal(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "20260921-141315-demo", trials_total=16, trials_done=16)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = dashboard(app)
        assert screen.state.status == "finished"
        table = app.screen.query_one(TrialTable)
        assert table.row_count == 16
        plot = app.screen.query_one(ParetoPlot)
        assert len(plot.points) == 16
        chosen = screen.state.summary["chosen_trial"]
        assert plot.best == chosen and plot.front == set(pareto_front({n: trial_result(n) for n in range(16)}))
        text = screen_text(app)
        assert "✔ finished" in text and "trial 16/16" in text and f"chosen #{chosen}" in text
        assert "trial 15: refusals" in text, "the worker.log tail is shown"
        assert "RAM 12.0/64.0 GB" in text and "GPU0 21.0/80.0 GB" in text


async def test_sorting_the_trials(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "sorted", trials_total=10, trials_done=10)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(TrialTable)
        await pilot.press("s")
        assert table.sort_key == "refusals"
        refusals = [trial_result(int(str(key.value)))[0] for key in table.rows]
        assert refusals == sorted(refusals)
        await pilot.press("s")
        kls = [trial_result(int(str(key.value)))[1] for key in table.rows]
        assert kls == sorted(kls)


async def test_failed_run_shows_its_error(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "failed", trials_done=6, ending="failed")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert dashboard(app).state.status == "failed"
        text = screen_text(app)
        assert "✘ failed" in text and "CUDA out of memory" in text and "r: resume" in text
        await pilot.press("e")
        assert "CUDA out of memory" in screen_text(app)


async def test_cancelled_run(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "cancelled", trials_done=5, ending="cancelled")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert dashboard(app).state.status == "cancelled"
        assert "Cancelled:" in screen_text(app)
        assert app.screen.query_one(TrialTable).row_count == 5


async def test_a_dead_worker_shows_as_failed_with_its_log(
    runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = write_run(runs_folder, "died", trials_done=3, ending="died")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        state = dashboard(app).state
        assert state.status == "failed"
        assert "worker process stopped" in state.error_message
        assert "Killed" in state.error_traceback
        assert "Killed" in screen_text(app)


async def test_live_events_update_the_dashboard(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "live", trials_total=8, trials_done=3, ending="running")
    worker = start_fake_worker(run)
    try:
        app = make_app(attach_run=run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: len(dashboard(app).state.finished_trials) == 3)
            assert dashboard(app).state.is_running
            results = {number: trial_result(number) for number in range(3)}
            run.append(*trial_events(3, 2, 8, START + 200, results))
            await wait_until(pilot, lambda: app.screen.query_one(TrialTable).row_count == 5)
            assert "trial 5/8" in screen_text(app)
            run.append(PhaseFinished(phase="trials", seconds=10), JobFinished(summary={"chosen_trial": 1}))
            await wait_until(pilot, lambda: dashboard(app).state.status == "finished")
            worker.kill()
            worker.wait()
            await settle(pilot)
            assert "✔ finished" in screen_text(app)
    finally:
        worker.kill()
        worker.wait()


async def test_cancel_asks_first_then_stops_the_worker_gracefully(
    runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = write_run(runs_folder, "to-cancel", trials_total=8, trials_done=2, ending="running")
    worker = start_fake_worker(run)
    try:
        app = make_app(attach_run=run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: len(dashboard(app).state.finished_trials) == 2)
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("n")
            assert worker.poll() is None, "answering no leaves the run alone"
            await pilot.press("c")
            await pilot.press("y")
            await wait_until(pilot, lambda: dashboard(app).state.status == "cancelled")
            assert worker.wait(timeout=10) == 130
    finally:
        if worker.poll() is None:
            worker.kill()


async def test_quitting_and_reattaching_replays_the_journal(
    runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = write_run(runs_folder, "reattach", trials_total=10, trials_done=4, ending="running")
    worker = start_fake_worker(run)
    try:
        app = make_app(attach_run=run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: len(dashboard(app).state.finished_trials) == 4)
            await pilot.press("d")
            assert app.screen.__class__.__name__ == "HomeScreen"
            started = time.monotonic()
            await pilot.press("q")
        assert time.monotonic() - started < 5, "quitting does not wait for the run"
        assert psutil.pid_exists(worker.pid) and worker.poll() is None, "quitting never stops a running job"

        run.append(*trial_events(4, 3, 10, START + 300, {n: trial_result(n) for n in range(4)}))
        again = make_app(attach_run=run.path)
        async with again.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: again.screen.query_one(TrialTable).row_count == 7)
            assert dashboard(again).state.is_running
            assert "trial 7/10" in screen_text(again)
    finally:
        worker.kill()
        worker.wait()


async def test_more_trials_resumes_with_a_larger_total(
    runs_folder: Path, make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(runs_folder, "more", trials_total=6, trials_done=6)
    calls: list[tuple[int, Path, bool]] = []

    def fake_start(settings, run_dir=None, resume=False):  # type: ignore[no-untyped-def]
        calls.append((settings.optimization.trials, run_dir, resume))
        raise RuntimeError("not starting a real worker in this test")

    monkeypatch.setattr("heretic_tui.core.abliteration.job.start_abliteration", fake_start)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        assert isinstance(app.screen, ValueDialog)
        dialog_input = app.screen.query_one("#value")
        dialog_input.value = "3"  # type: ignore[attr-defined]
        await pilot.pause()
        assert app.screen.query_one("#ok").disabled, "fewer trials than done is refused inline"
        dialog_input.value = "30"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)
    assert calls == [(30, run.path, True)]


async def test_trial_actions_open_from_the_table(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "actions", trials_total=5, trials_done=5)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one(TrialTable).focus()
        await pilot.press("down", "enter")
        assert isinstance(app.screen, TrialActionsScreen)
        assert app.screen.trial == 1
        assert "Export the merged model" in screen_text(app)
        await pilot.press("m")
        assert isinstance(app.screen, ValueDialog), "more trials from a trial goes back to the dashboard's question"


async def test_a_job_without_trials_shows_its_results(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = runs_folder / "20260921-160000-compare-demo-vs-demo-3"
    run.mkdir()
    (run / "job.json").write_text(json.dumps({"kind": "compare", "created": START, "model": "demo"}))
    (run / "worker.json").write_text(json.dumps({"pid": 999_999, "exit_code": 0}))
    events = [JobStarted(job="compare", model="demo", time=START),
              PhaseStarted(phase="model 1/2: load", description="loading demo", time=START),
              PhaseFinished(phase="model 1/2: load", seconds=3.0, time=START + 3),
              Metrics(name="model 1/2 demo", values={"refusals": "9/10", "kl_vs_first": 0.0}, time=START + 9),
              ArtifactWritten(name="comparison.md", path=str(run / "comparison.md"), time=START + 20),
              JobFinished(summary={"status": "finished"}, time=START + 20)]
    (run / "events.jsonl").write_text("".join(item.to_json() + "\n" for item in events))
    app = make_app(attach_run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "model 1/2 demo" in text and "refusals 9/10" in text and "comparison.md" in text
        assert "Refusals vs KL" not in text and "Trials (" not in text
        assert "More trials" not in text, "only an abliteration study can be extended"


async def test_a_folder_that_is_not_a_run_is_explained(tmp_path: Path, make_app: Callable[..., HereticApp]) -> None:
    app = make_app(attach_run=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "is not a heretic-tui run" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HomeScreen"
