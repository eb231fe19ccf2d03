"""Home (recent runs, actions, palette, refreshing while runs are live, damaged runs, quitting), the runs screen
(open, resume, delete) and a trial's export and comparison, on runs placed from the recording of real jobs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from recorded_runs import START, Recording, RecordedRun, trial_finished
from textual.widgets import DataTable
from tui_helpers import screen_text, screen_words, settle, wait_for, wait_for_text

from heretic_tui.core.runs.events import JobError, TrialStarted
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import load_settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.formatting import format_kl
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import ConfirmDialog
from heretic_tui.tui.screens.finetune_wizard import FinetuneWizardScreen
from heretic_tui.tui.screens.home import HomeScreen
from heretic_tui.tui.screens.runs import RunsScreen
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.screens.upload import UploadScreen
from heretic_tui.tui.screens.wizard import WizardScreen
from heretic_tui.tui.widgets.trial_table import TrialTable

pytestmark = pytest.mark.anyio


def place_dated(recorded: Recording, name: str, root: Path, as_name: str, start: float) -> RecordedRun:
    """A placed run whose folder date is its start, as a run written then has (lists sort by it)."""
    run = recorded.place(name, root, as_name, start=start)
    os.utime(run.path / "job.json", (start, start))
    return run


@pytest.fixture
def three_runs(recorded: Recording, runs_folder: Path) -> list[Path]:
    """A finished study (newest), one that failed, one that was cancelled (oldest)."""
    return [
        place_dated(recorded, "finished", runs_folder, "20260921-141315-demo", START + 300).path,
        place_dated(recorded, "failed", runs_folder, "20260921-120000-failed", START + 200).path,
        place_dated(recorded, "cancelled", runs_folder, "20260920-100000-cancelled", START + 100).path,
    ]


async def select_row(pilot: object, table: DataTable, key: Path) -> None:
    """Move a table's cursor to the row of ``key`` with the keys a person presses."""
    rows = [str(row.value) for row in table.rows]
    table.focus()
    await pilot.press("ctrl+home", *["down"] * rows.index(str(key)))  # type: ignore[attr-defined]


async def test_home_lists_runs_with_their_status(three_runs: list[Path], make_app: Callable[..., HereticApp]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "✔ finished", "✘ failed", "■ cancelled", message="home lists the runs")
        app.screen.query_one("#recent-runs").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.run_path == three_runs[0],
                       "Enter on the newest run opens it")
        await settle(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "detach goes home")


async def test_every_home_action_is_in_the_palette(make_app: Callable[..., HereticApp]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        for expected in ("New abliteration run", "Model browser", "Runs", "New fine-tuning run",
                         "Upload a model folder", "Chat with the configured model"):
            assert expected in titles
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneWizardScreen)
                       and "New fine-tuning run" in screen_text(app), "f opens the fine-tune wizard")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "escape goes home")
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen), "u opens the upload")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "escape goes home")


async def test_runs_screen_deletes_after_confirmation(
    three_runs: list[Path], make_app: Callable[..., HereticApp]
) -> None:
    failed = three_runs[1]
    error = next(item for item in RunDirectory(failed).read_events() if isinstance(item, JobError))
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("r")
        table = await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen)
                               and app.screen.query_one("#runs-table", DataTable).row_count == 3
                               and app.screen.query_one("#runs-table", DataTable), "the runs list shows three runs")
        assert error.message[:40] not in screen_words(app)
        await select_row(pilot, table, failed)
        await wait_for(pilot, lambda: error.message[:40] in screen_words(app),
                       "the detail pane shows the failed run's error")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "delete asks first")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), "n keeps the run")
        assert failed.exists()
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "delete asks again")
        await pilot.press("y")
        await wait_for(pilot, lambda: not failed.exists(), "y deletes the run folder")
        await wait_for(pilot, lambda: table.row_count == 2 and failed.name not in screen_text(app),
                       "the list no longer shows it")


async def test_runs_screen_resumes_a_cancelled_run(
    three_runs: list[Path], make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path | None, bool, int]] = []

    def start(settings, run_dir=None, resume=False):  # type: ignore[no-untyped-def]
        calls.append((run_dir, resume, settings.optimization.trials))
        return JobHandle(RunDirectory(Path(run_dir)))

    monkeypatch.setattr("heretic_tui.core.abliteration.job.start_abliteration", start)
    cancelled = three_runs[2]
    trials = load_settings(cancelled / "config.toml", environ={}, search_default_paths=False).optimization.trials
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("r")
        table = await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen)
                               and app.screen.query_one("#runs-table", DataTable).row_count == 3
                               and app.screen.query_one("#runs-table", DataTable), "the runs list shows three runs")
        await select_row(pilot, table, cancelled)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the resumed run opens")
        await settle(pilot)
    assert calls == [(cancelled, True, trials)], "resumed with the run's own settings"


async def test_exporting_a_trial(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = recorded.place("finished", runs_folder, "20260921-141315-demo")
    export_job = run.path / "jobs" / recorded.path("export").name
    assert (export_job / "job.json").is_file(), "the placed study keeps the export job the recording ran"
    trial = sorted(run.trials)[3]
    requests: list[tuple[Path, int, Path, bool]] = []

    def start_export(run_dir, trial, output, adapter=False):  # type: ignore[no-untyped-def]
        requests.append((Path(run_dir), trial, Path(output), adapter))
        return JobHandle(RunDirectory(export_job))

    monkeypatch.setattr("heretic_tui.core.shipping.export.start_export", start_export)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one(TrialTable).focus()
        await pilot.press("ctrl+home", "down", "down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrialActionsScreen) and app.screen.trial == trial,
                       "the fourth trial's actions open")
        await pilot.press("l")
        await wait_for(pilot, lambda: app.screen.query_one("#value").value.endswith(f"exports/trial-{trial}-adapter"),
                       "the adapter export suggests a folder in the run")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Export finished" in screen_text(app), "the export job is followed to its end")
        await settle(pilot)
    assert requests == [(run.path, trial, run.path / "exports" / f"trial-{trial}-adapter", True)]


async def test_screen_keys_are_palette_commands(recorded: Recording, runs_folder: Path,
                                                make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "palette")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"Sort")
        await wait_for(pilot, lambda: "Sort (s)" in screen_text(app), "the palette offers the screen's Sort key")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen)
                       and app.screen.query_one(TrialTable).sort_key == "refusals", "the command sorts the trials")


async def test_comparing_a_trial_with_the_original(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    placed = recorded.place_together({"finished": "20260921-141315-demo", "compare": "20260921-160000-compare"},
                                     runs_folder)
    run, compare = placed["finished"], placed["compare"]
    document = compare.read("comparison.json")
    original, chosen = document["models"]
    first = document["answers"][0]
    trial = sorted(run.trials)[3]
    requests: list[tuple[list[str], str, int, int]] = []

    def start_compare(  # type: ignore[no-untyped-def]
        models, prompts, settings, run_dir=None, *, max_new_tokens=128, held_out=None
    ):
        requests.append((models, prompts, settings.prompts.max_eval_prompts, max_new_tokens))
        return JobHandle(RunDirectory(compare.path))

    monkeypatch.setattr("heretic_tui.core.shipping.compare.start_compare", start_compare)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one(TrialTable).focus()
        await pilot.press("ctrl+home", "down", "down", "down", "enter", "v")
        await pilot.press("ctrl+r")
        await wait_for_text(pilot, first["prompt"][:30], first["responses"][0]["text"].split()[0], "refused",
                            f"{original['label']} {original['refusals']}/{original['total']} refusals, the KL reference",
                            f"KL vs {original['label']} {format_kl(chosen['kl_vs_first'])}", words=True,
                            message="the answers are shown, the original as the KL reference and the trial's KL "
                            "measured against it")
        await settle(pilot)
    model = load_settings(run.path / "config.toml", environ={}, search_default_paths=False).model.model
    assert requests == [([model, f"{run.path}#{trial}"], "builtin:harmful@test", 4, 96)]


async def test_enter_on_a_home_action_opens_it(make_app: Callable[..., HereticApp]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.screen.query_one("#actions").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen), "Enter on 'New abliteration run' opens it")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "escape goes back home")
        app.screen.query_one("#actions").focus()
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), "Enter on 'All runs' opens the runs list")


async def test_the_lists_refresh_while_a_run_is_live(recorded: Recording, runs_folder: Path,
                                                     make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("killed", runs_folder, "20260921-150000-live", trials=3)
    total = next(item.total for item in run.events if isinstance(item, TrialStarted))
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: f"3/{total}" in screen_text(app), "home lists the live run")
        run.play_on(trial_finished(4))
        await wait_for(pilot, lambda: f"5/{total}" in screen_text(app), "home shows new trials without a key press")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and f"5/{total}" in screen_text(app),
                       "the runs list shows the live run")
        run.play_on(trial_finished(5))
        await wait_for(pilot, lambda: f"6/{total}" in screen_text(app), "the runs list refreshes by itself too")


async def test_a_damaged_run_is_listed_with_the_file_named(
    three_runs: list[Path], make_app: Callable[..., HereticApp]
) -> None:
    damaged = three_runs[1]
    (damaged / "job.json").write_text("{this is not json", encoding="utf-8")
    os.utime(damaged / "job.json", (START + 200, START + 200))
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "⚠ damaged", "✔ finished", "■ cancelled",
                            message="home lists the damaged run as damaged and the other runs still")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and "⚠ damaged" in screen_text(app),
                       "the runs list shows it too")
        table = app.screen.query_one("#runs-table", DataTable)
        rows = [str(key.value) for key in table.rows]
        table.focus()
        await pilot.press("ctrl+home", *["down"] * rows.index(str(damaged)))
        await wait_for(pilot, lambda: "Damaged: job.json of the run" in screen_words(app),
                       "the detail pane names the damaged file")
        await pilot.press("ctrl+home", *["down"] * rows.index(str(three_runs[2])), "o")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.run_path == three_runs[2]
                       and app.screen.state.status == "cancelled", "another run still opens")


async def test_quitting_during_a_live_run_says_it_keeps_running(
    recorded: Recording, runs_folder: Path, make_app: Callable[..., HereticApp]
) -> None:
    run = recorded.place("killed", runs_folder, "20260921-150000-live", trials=3)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.state.trial_total,
                       "the live run is shown")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "ctrl+q asks first")
        message = app.screen.message  # type: ignore[attr-defined]
        assert "keeps running in the background" in message and f"heretic-tui attach {run.path}" in message
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "n stays in the app")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "ctrl+q asks again")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None, "ctrl+q twice quits")
    assert RunDirectory(run.path).worker_alive(), "quitting leaves the run's worker (here: this process) alone"


async def test_quitting_without_a_live_run_asks_nothing(recorded: Recording, runs_folder: Path,
                                                        make_app: Callable[..., HereticApp]) -> None:
    run = recorded.place("finished", runs_folder, "20260921-141315-demo")
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None, "ctrl+q quits at once")
