"""The dashboard rebuilt from recorded runs and following live ones: endings, cancel, detach, re-attach, and what
it shows while a run goes on (the run's ETA, the trial in flight, the log, the search plan, the end alert).

Every run is a real job's folder placed from the recording (see recorded_runs); figures are read from the placed
run (its trials, report and events), never written into a test, because the demo model is trained on each machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from recorded_runs import Recording, start_fake_worker, trial_finished
from textual.widgets import Log
from tui_helpers import screen_text, screen_words, settle, wait_for, wait_for_text

from heretic_tui.core.api import approximate_duration
from heretic_tui.core.runs.events import JobError, Metrics, TrialStarted
from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.formatting import format_duration, format_figure, format_kl
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import ConfirmDialog, MessageDialog, ValueDialog
from heretic_tui.tui.screens.home import HomeScreen
from heretic_tui.tui.screens.job_dashboard import JobDashboard
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.widgets.pareto_plot import KlAxis, ParetoPlot
from heretic_tui.tui.widgets.trial_table import TrialTable

pytestmark = pytest.mark.anyio


def dashboard(app: HereticApp) -> DashboardScreen:
    assert isinstance(app.screen, DashboardScreen), type(app.screen)
    return app.screen


async def test_finished_run_is_rebuilt_from_its_journal(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("finished", runs_folder, "20260921-141315-demo")
    report = run.report
    assert report is not None
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = dashboard(app)
        assert screen.state.status == "finished"
        assert app.screen.query_one(TrialTable).row_count == len(run.trials)
        plot = app.screen.query_one(ParetoPlot)
        assert len(plot.points) == len(run.trials)
        chosen = report["chosen_trial"]
        assert plot.best == chosen and plot.front == set(report["pareto"])
        await wait_for_text(pilot, "✔ finished", f"trial {len(run.trials)}/{len(run.trials)}", f"chosen #{chosen}",
                            f"trial {max(run.trials)}: refusals", "RAM 12.0/64.0 GiB", "GPU0 21.0/80.0 GiB",
                            message="the header, the worker.log tail and the memory bar show the finished run")


async def test_sorting_the_trials(recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "sorted")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(TrialTable)
        await pilot.press("s")
        assert table.sort_key == "refusals"
        refusals = [run.trials[int(str(key.value))].refusals for key in table.rows]
        assert refusals == sorted(refusals)
        await pilot.press("s")
        kls = [run.trials[int(str(key.value))].kl for key in table.rows]
        assert kls == sorted(kls)


async def test_failed_run_shows_its_error(recorded: Recording, runs_folder: Path,
                                          make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("failed", runs_folder, "failed")
    error = next(item for item in run.events if isinstance(item, JobError))
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert dashboard(app).state.status == "failed"
        assert "does not exist" in error.message
        await wait_for_text(pilot, "✘ failed", "does not exist", "r: resume", words=True,
                            message="the failure, its error and how to resume are shown")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog)
                       and app.screen.message == error.message, "e shows the whole error")


async def test_cancelled_run(recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("cancelled", runs_folder, "cancelled")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert dashboard(app).state.status == "cancelled"
        await wait_for_text(pilot, "Cancelled:", message="the cancellation is shown")
        assert app.screen.query_one(TrialTable).row_count == len(run.trials)


async def test_a_killed_worker_shows_as_failed_with_its_log(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("killed", runs_folder, "killed")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        state = dashboard(app).state
        assert state.status == "failed"
        assert "SIGKILL" in state.error_message and "worker.log" in state.error_message
        assert "exit code -9" in state.error_traceback, "the last lines of worker.log come with the error"
        await wait_for_text(pilot, "exit code -9", message="the worker's end is shown")


async def test_live_events_update_the_dashboard(recorded: Recording, runs_folder: Path,
                                                make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "live", trials=5)
    total = len(recorded.place("finished", runs_folder, "whole").trials)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 5, "the cut run is replayed")
        assert dashboard(app).state.is_running
        run.play_on(trial_finished(6))
        await wait_for(pilot, lambda: app.screen.query_one(TrialTable).row_count == 7, "new trials are followed")
        await wait_for_text(pilot, f"trial 7/{total}", message="the header follows the new trial")
        run.play_on()
        await wait_for(pilot, lambda: dashboard(app).state.status == "finished", "the recorded ending is followed")
        await wait_for(pilot, lambda: "✔ finished" in screen_text(app), "the ending is on screen")


async def test_cancel_asks_first_then_stops_the_worker_gracefully(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("killed", runs_folder, "to-cancel", trials=2)
    worker = start_fake_worker(run, recorded)
    try:
        app = make_app(attach_run=run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 2, "the run is replayed")
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "cancel asks first")
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "n goes back")
            assert worker.poll() is None, "answering no leaves the run alone"
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "cancel asks again")
            await pilot.press("y")
            await wait_for(pilot, lambda: dashboard(app).state.status == "cancelled", "the worker cancels")
            assert worker.wait(timeout=10) == 130
    finally:
        if worker.poll() is None:
            worker.kill()


async def test_quitting_and_reattaching_replays_the_journal(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("killed", runs_folder, "reattach", trials=4)
    worker = start_fake_worker(run, recorded)
    try:
        app = make_app(attach_run=run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 4, "the run is replayed")
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "detach goes home")
            started = time.monotonic()
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog)
                           and f"heretic-tui attach {run.path}" in app.screen.message,
                           "quitting while the run is live says how to get back to it")
            await pilot.press("y")
            await wait_for(pilot, lambda: app.return_code is not None, "y quits")
        assert time.monotonic() - started < 10, "quitting does not wait for the run"
        assert psutil.pid_exists(worker.pid) and worker.poll() is None, "quitting never stops a running job"

        run.play_on(trial_finished(6))
        again = make_app(attach_run=run.path)
        async with again.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: again.screen.query_one(TrialTable).row_count == 7,
                           "a new app replays every trial, the ones written while it was closed too")
            assert dashboard(again).state.is_running
            await wait_for_text(pilot, f"trial 7/{dashboard(again).state.trial_total}",
                                message="the header shows the trials written while the app was closed")
    finally:
        worker.kill()
        worker.wait()


async def test_more_trials_resumes_with_a_larger_total(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = recorded.place("finished", runs_folder, "more")
    done = len(run.trials)
    calls: list[tuple[int, Path, bool]] = []

    def fake_start(settings, run_dir=None, resume=False):  # type: ignore[no-untyped-def]
        calls.append((settings.optimization.trials, run_dir, resume))
        raise RuntimeError("not starting a real worker in this test")

    monkeypatch.setattr("heretic_tui.core.abliteration.job.start_abliteration", fake_start)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, ValueDialog), "m asks how many trials")
        dialog_input = app.screen.query_one("#value")
        dialog_input.value = str(done - 1)  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: app.screen.query_one("#ok").disabled,
                       "fewer trials than done is refused inline")
        dialog_input.value = str(done + 18)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_for(pilot, lambda: calls, "the study is resumed with the larger total")
    assert calls == [(done + 18, run.path, True)]


async def test_trial_actions_open_from_the_table(recorded: Recording, runs_folder: Path,
                                                 make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "actions")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one(TrialTable).focus()
        await pilot.press("ctrl+home", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrialActionsScreen), "Enter opens the trial's actions")
        assert app.screen.trial == sorted(run.trials)[1]
        await wait_for_text(pilot, "Export the merged model", message="the trial's actions are listed")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, ValueDialog),
                       "more trials from a trial goes back to the dashboard's question")


async def test_a_comparison_says_what_each_figure_is(recorded: Recording, runs_folder: Path,
                                                     make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("compare", runs_folder, "20260921-160000-compare")
    original, trial = run.read("comparison.json")["models"]
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, JobDashboard)
        await wait_for_text(pilot, f"model 1/2 {original['label']} refusals {original['refusals']}/{original['total']}",
                            "the KL reference", f"KL vs model 1 {format_kl(trial['kl_vs_first'])}",
                            f"perplexity on held-out text {format_figure(trial['perplexity'])}", "comparison.md",
                            words=True, message="each figure is shown with what it is measured against, rounded "
                            "(the KL against the first model, not the trial's KL from the study)")
        text = screen_text(app)
        assert "Refusals vs KL" not in text and "Trials (" not in text
        assert "More trials" not in text, "only an abliteration study can be extended"


async def test_a_folder_that_is_not_a_run_is_explained(tmp_path: Path, make_app: Callable[..., HereticApp]) -> None:
    app = make_app(attach_run=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "is not a heretic-tui run" in screen_words(app),
                       "a folder without job.json is explained in a dialog")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "closing the dialog leaves for home")


async def test_the_run_eta_counts_down_inside_a_trial(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("killed", runs_folder, "long-trial", trials=3)
    in_flight = run.events[-1]
    assert isinstance(in_flight, TrialStarted) and in_flight.number == 3
    now = [in_flight.time]
    app = make_app(attach_run=run.path, clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        state = await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 3
                               and dashboard(app).state, "the three finished trials are replayed")
        median = state.median_trial_seconds()
        estimate = state.study_estimate
        assert median is not None and estimate is not None
        left = state.trial_total - 4
        assert estimate.remaining_seconds == pytest.approx(estimate.seconds_per_trial * (left + 1))
        now[0] = in_flight.time + median / 4
        first = state.eta_seconds(now[0])
        assert first == pytest.approx(estimate.remaining_seconds - (now[0] - estimate.time)), \
            "the worker's estimate, counted down since it came"
        await wait_for(pilot, lambda: f"trial #3 {format_duration(median / 4)} of ~{format_duration(median)}"
                       in screen_words(app), "the phase list shows the trial in flight against a typical trial")
        now[0] = in_flight.time + median / 2
        await wait_for(pilot, lambda: f"trial #3 {format_duration(median / 2)} of" in screen_words(app),
                       "the trial in flight keeps counting between events")
        second = dashboard(app).state.eta_seconds(now[0])
        assert second == pytest.approx(first - median / 4), "the run ETA counts down"
        await wait_for(pilot, lambda: f"{approximate_duration(second)} left" in screen_text(app),
                       "the header shows it")
        now[0] = in_flight.time + median * 10
        await wait_for(pilot, lambda: f"{approximate_duration(estimate.seconds_per_trial * left)} left"
                       in screen_text(app), "a trial running long leaves the trials still to come")


async def test_the_worker_log_starts_at_and_follows_its_newest_line(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("killed", runs_folder, "chatty", trials=3)
    (run.path / "worker.log").write_text("".join(f"old line {number}\n" for number in range(150)))
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        log = await wait_for(pilot, lambda: app.screen.query_one("#worker-log", Log), "the log panel is shown")
        await wait_for(pilot, lambda: log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y,
                       "the log opens scrolled to its newest line")
        await wait_for_text(pilot, "old line 149", message="the newest line is on screen")
        with open(run.path / "worker.log", "a") as handle:
            handle.write("".join(f"new line {number}\n" for number in range(40)))
        await wait_for(pilot, lambda: "new line 39" in screen_text(app),
                       "lines the worker writes later scroll into view")
        assert log.scroll_y == log.max_scroll_y


async def test_a_followed_run_that_finishes_rings_and_notifies(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("finished", runs_folder, "to-finish", trials=5)
    app = make_app(attach_run=run.path)
    alerts: list[str] = []
    app.terminal_write = alerts.append
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 5, "the trials are replayed")
        assert alerts == [], "opening a run rings nothing"
        run.play_on()
        await wait_for(pilot, lambda: alerts, "the end of a followed run reaches the terminal")
    alert = alerts[0]
    assert alert.startswith("\a"), "the bell"
    assert "\x1b]9;heretic-tui: abliteration finished: to-finish" in alert, "an OSC 9 notification"
    assert "\x1b]777;notify;heretic-tui: abliteration finished;to-finish" in alert, "an OSC 777 notification"


async def test_a_run_that_ended_before_it_was_opened_rings_nothing(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    finished = recorded.place("finished", runs_folder, "finished-earlier")
    killed = recorded.place("killed", runs_folder, "killed-earlier")
    for run in (finished, killed):
        app = make_app(attach_run=run.path)
        alerts: list[str] = []
        app.terminal_write = alerts.append
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert dashboard(app).state.status in ("finished", "failed")
        assert alerts == [], f"{run.path.name}: replaying an ending is not news"


async def test_terminal_notifications_can_be_turned_off(
    recorded: Recording, runs_folder: Path, settings: Settings, make_app: Callable[..., HereticApp]
) -> None:
    settings.output.notify_terminal = False
    run = recorded.place("finished", runs_folder, "quiet", trials=5)
    app = make_app(attach_run=run.path)
    alerts: list[str] = []
    app.terminal_write = alerts.append
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(dashboard(app).state.finished_trials) == 5, "the trials are replayed")
        run.play_on()
        await wait_for(pilot, lambda: dashboard(app).state.status == "finished", "the ending is followed")
        await wait_for(pilot, lambda: "✔ finished" in screen_text(app), "the ending is still on screen")
    assert alerts == []


async def test_the_dashboard_opens_on_the_chosen_trial(recorded: Recording, runs_folder: Path,
                                                       make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "chosen")
    report = run.report
    assert report is not None
    chosen = report["chosen_trial"]
    assert chosen != min(run.trials), "the recording chose a trial other than the first row"
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(TrialTable)
        assert table.selected_trial == chosen, "the cursor starts on the trial the run chose"
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrialActionsScreen) and app.screen.trial == chosen,
                       "Enter opens the chosen trial's actions")


async def test_the_kl_axis_switches_to_a_log_scale(recorded: Recording, runs_folder: Path,
                                                   make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "log-axis")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        plot = app.screen.query_one(ParetoPlot)
        assert not plot.log_kl
        await wait_for_text(pilot, "KL divergence →", message="the KL axis starts linear")
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


async def test_f1_opens_and_closes_the_keys_panel(recorded: Recording, runs_folder: Path,
                                                  make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "help")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: app.screen.query("HelpPanel"), "F1 shows the keys of the screen")
        await pilot.press("f1")
        await wait_for(pilot, lambda: not app.screen.query("HelpPanel"), "F1 again closes the keys panel")


async def test_the_run_header_says_how_the_study_samples(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("finished", runs_folder, "search-plan", trials=5)
    search = next(item for item in run.events if isinstance(item, Metrics) and item.name == "search")
    random_trials, sampler = search.values["random_trials"], search.values["sampler"]
    total = next(item.total for item in run.events if isinstance(item, TrialStarted))
    assert 0 < random_trials < total
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: f"trial 5/{total} · {random_trials} random, then {sampler}"
                       in screen_text(app), "the core's search plan is in the run header")
