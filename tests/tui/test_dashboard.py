"""The dashboard rebuilt from recorded journals and following live ones: endings, cancel, detach, re-attach."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from textual.widgets import Log
from tui_helpers import FIXED_NOW, screen_text, screen_words, settle, wait_for, wait_until
from recorded_runs import START, pareto_front, start_fake_worker, trial_events, trial_result, write_run

from heretic_tui.core.runs.events import (
    ArtifactWritten,
    JobError,
    JobFinished,
    JobStarted,
    Metrics,
    PhaseFinished,
    PhaseStarted,
)
from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.formatting import format_duration
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import ConfirmDialog, ValueDialog
from heretic_tui.tui.screens.home import HomeScreen
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.widgets.pareto_plot import KlAxis, ParetoPlot
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
        assert "RAM 12.0/64.0 GiB" in text and "GPU0 21.0/80.0 GiB" in text


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
        assert "worker process" in state.error_message and "worker.log" in state.error_message
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
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog)
                           and f"heretic-tui attach {run.path}" in app.screen.message,
                           "quitting while the run is live says how to get back to it")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.return_code is not None, "y quits")
        assert time.monotonic() - started < 10, "quitting does not wait for the run"
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
        await pilot.press("ctrl+home", "down", "enter")
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
        await wait_for(pilot, lambda: "is not a heretic-tui run" in screen_words(app),
                       "a folder without job.json is explained in a dialog")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "closing the dialog leaves for home")


async def test_the_run_eta_counts_down_inside_a_long_trial(
    runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = write_run(runs_folder, "long-trial", trials_total=8, trials_done=3, ending="running")
    worker = start_fake_worker(run)
    in_flight = run.events[-1]
    now = [in_flight.time + 1.0]
    try:
        app = make_app(attach_run=run.path, clock=lambda: now[0])
        async with app.run_test(size=(120, 40)) as pilot:
            state = await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 3
                                   and dashboard(app).state, "the three finished trials are replayed")
            median = state.median_trial_seconds()
            first = state.eta_seconds(now[0])
            assert first == pytest.approx(median * 4 + (median - 1.0)), "4 trials to come, and most of the one in flight"
            await wait_for(pilot, lambda: "trial #3 1.0s of" in screen_words(app),
                           "the phase list shows how far the trial in flight is against a typical trial")
            now[0] += 2.0
            await wait_for(pilot, lambda: "trial #3 3.0s of" in screen_words(app),
                           "the trial in flight keeps counting between events")
            assert dashboard(app).state.eta_seconds(now[0]) == pytest.approx(first - 2.0), "the run ETA counts down"
            assert f"ETA {format_duration(first - 2.0)}" in screen_text(app)
    finally:
        worker.kill()
        worker.wait()


async def test_the_worker_log_starts_at_and_follows_its_newest_line(
    runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = write_run(runs_folder, "chatty", trials_total=8, trials_done=3, ending="running")
    (run.path / "worker.log").write_text("".join(f"old line {number}\n" for number in range(150)))
    worker = start_fake_worker(run)
    try:
        app = make_app(attach_run=run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            log = await wait_for(pilot, lambda: app.screen.query_one("#worker-log", Log), "the log panel is shown")
            await wait_for(pilot, lambda: log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y,
                           "the log opens scrolled to its newest line")
            assert "old line 149" in screen_text(app)
            with open(run.path / "worker.log", "a") as handle:
                handle.write("".join(f"new line {number}\n" for number in range(40)))
            await wait_for(pilot, lambda: "new line 39" in screen_text(app),
                           "lines the worker writes later scroll into view")
            assert log.scroll_y == log.max_scroll_y
    finally:
        worker.kill()
        worker.wait()


async def test_a_followed_run_that_finishes_rings_and_notifies(
    runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = write_run(runs_folder, "to-finish", trials_total=4, trials_done=3, ending="running")
    worker = start_fake_worker(run)
    try:
        app = make_app(attach_run=run.path)
        alerts: list[str] = []
        app.terminal_write = alerts.append
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 3, "the trials are replayed")
            assert alerts == [], "opening a run rings nothing"
            run.append(*trial_events(3, 1, 4, START + 200, {n: trial_result(n) for n in range(3)}),
                       PhaseFinished(phase="trials", seconds=10, time=START + 210),
                       JobFinished(summary={"chosen_trial": 1}, time=FIXED_NOW))
            await wait_for(pilot, lambda: alerts, "the end of a followed run reaches the terminal")
    finally:
        worker.kill()
        worker.wait()
    alert = alerts[0]
    assert alert.startswith("\a"), "the bell"
    assert "\x1b]9;heretic-tui: abliteration finished: to-finish" in alert, "an OSC 9 notification"
    assert "\x1b]777;notify;heretic-tui: abliteration finished;to-finish" in alert, "an OSC 777 notification"


async def test_terminal_notifications_can_be_turned_off(
    runs_folder: Path, settings: Settings, make_app: Callable[..., HereticApp]
) -> None:
    settings.output.notify_terminal = False
    run = write_run(runs_folder, "quiet", trials_total=4, trials_done=3, ending="running")
    worker = start_fake_worker(run)
    try:
        app = make_app(attach_run=run.path)
        alerts: list[str] = []
        app.terminal_write = alerts.append
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 3, "the trials are replayed")
            run.append(JobError(message="RuntimeError: boom", time=FIXED_NOW))
            await wait_for(pilot, lambda: dashboard(app).state.status == "failed", "the failure is followed")
            await wait_for(pilot, lambda: "Failed: RuntimeError: boom" in screen_words(app),
                           "the failure is still on screen")
    finally:
        worker.kill()
        worker.wait()
    assert alerts == []


async def test_the_dashboard_opens_on_the_chosen_trial(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "chosen", trials_total=16, trials_done=16)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        chosen = dashboard(app).state.summary["chosen_trial"]
        table = app.screen.query_one(TrialTable)
        assert chosen != 0 and table.selected_trial == chosen, "the cursor starts on the trial the run chose"
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrialActionsScreen) and app.screen.trial == chosen,
                       "Enter opens the chosen trial's actions")


async def test_the_kl_axis_switches_to_a_log_scale(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "log-axis", trials_total=10, trials_done=10)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        plot = app.screen.query_one(ParetoPlot)
        assert not plot.log_kl and "KL divergence →" in screen_text(app)
        await pilot.press("x")
        await wait_for(pilot, lambda: "KL divergence (log) →" in screen_text(app), "the axis says it is a log scale")
        assert plot.log_kl
        await pilot.press("x")
        await wait_for(pilot, lambda: "KL divergence →" in screen_text(app), "x switches back to linear")


def test_on_a_log_kl_axis_one_outlier_does_not_squash_the_rest() -> None:
    values = [0.01, 0.02, 0.04, 9.0]
    linear = KlAxis.fit(values, log=False)
    assert max(linear.position(value) for value in values[:3]) < 0.01, "on a linear axis they share one column"
    logarithmic = KlAxis.fit(values, log=True)
    positions = [logarithmic.position(value) for value in values]
    assert positions == sorted(positions) and 0 < positions[0] and positions[-1] < 1
    assert min(b - a for a, b in zip(positions, positions[1:])) > 0.05, "on a log axis each stands apart"
    assert logarithmic.position(0.0) == 0.0, "a KL of exactly 0 sits at the left edge"


async def test_f1_opens_and_closes_the_keys_panel(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "help", trials_total=6, trials_done=6)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: app.screen.query("HelpPanel"), "F1 shows the keys of the screen")
        await pilot.press("f1")
        await wait_for(pilot, lambda: not app.screen.query("HelpPanel"), "F1 again closes the keys panel")


async def test_the_run_header_says_how_the_study_samples(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "search-plan", trials_total=8, trials_done=3, ending="running")
    worker = start_fake_worker(run)
    try:
        app = make_app(attach_run=run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: "trial 3/8" in screen_text(app), "the run header shows the trials")
            run.append(Metrics(name="search", values={"random_trials": 3, "guided_trials": 5, "sampler": "TPE"},
                               time=START + 200))
            await wait_for(pilot, lambda: "trial 3/8 · 3 random, then TPE" in screen_text(app),
                           "the core's search plan reaches the run header")
    finally:
        worker.kill()
        worker.wait()
