"""Screenshots of the main screens at 80x24 and 160x48, compared with the accepted ones in __snapshots__.

Everything on screen is fixed: the runs are the committed screen scene (a recording of real jobs, see
recorded_runs), the clock and the memory probe are fakes, and the timezone is UTC. Each test places the scene in a
folder of its own, made for it and removed after it (``scene_folder``: as long as the ``SCENE_ROOT`` the accepted
screenshots show, and shown by that name, because pytest's ``tmp_path`` has a length that depends on the user, the
session and the test's name, and paths on screen wrap and are cut by length). Update after a deliberate change
with ``--snapshot-update -k <name>`` and look at the SVGs before committing them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import textual._doc
from textual.widgets import Input
from recorded_runs import FIXED_NOW, Scene, scene_folder, shown_as_scene_root, write_screen_scene
from tui_helpers import FixedResourceProbe, screen_text, screen_words, settle, wait_for

from heretic_tui.core.runs.events import TrainingStep, TrialFinished
from heretic_tui.core.runs.journal import read_journal
from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.finetune_choices import data_entries
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.lineage import LineageScreen
from heretic_tui.tui.screens.runs import RunsScreen
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.screens.upload import UploadScreen

SIZES = [(80, 24), (160, 48)]
size_ids = [f"{width}x{height}" for width, height in SIZES]


@pytest.fixture
def scene(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    """The screen scene in a folder of its own; every screenshot shows it as SCENE_ROOT, with steady cursors (a
    focused input's cursor blinks twice a second, so a screenshot would show it or not by chance)."""
    root = scene_folder()
    try:
        placed = write_screen_scene(root)
        for name, value in placed.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        screenshot = textual._doc.take_svg_screenshot

        def steady_screenshot(*arguments: Any, run_before: Callable[[Any], Any] | None = None, **options: Any) -> str:
            assert not options.get("press"), "press keys in run_before, so the cursors are steadied after them"

            async def prepared(pilot: Any) -> None:
                if run_before is not None:
                    await run_before(pilot)
                for field in pilot.app.screen.query(Input):
                    field.cursor_blink = False
                await pilot.pause()

            return shown_as_scene_root(screenshot(*arguments, run_before=prepared, **options), root)

        monkeypatch.setattr(textual._doc, "take_svg_screenshot", steady_screenshot)
        yield placed
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def snapshot_settings(scene: Scene) -> Settings:
    return scene.settings()


def app_for(settings: Settings, **options: Any) -> HereticApp:
    return HereticApp(settings=settings, clock=lambda: FIXED_NOW, resource_probe=FixedResourceProbe(), **options)


def rows_shown(selector: str, count: int) -> Callable[[Any], Any]:
    """A run_before that waits until the table on the current screen shows ``count`` rows, then settles."""

    async def wait(pilot: Any) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query_one(selector).row_count == count,
                       f"{selector} shows {count} rows")
        await settle(pilot)

    return wait


async def just_refreshed(pilot: Any) -> None:
    """Wait for the runs list's next refresh (every few seconds while a run in it is live) and for its footer.

    Each refresh redraws the footer's keys, with a frame between in which the footer is empty; a screenshot taken
    right after a refresh is seconds away from the next one.
    """
    screen = pilot.app.screen
    before = screen.summaries
    await wait_for(pilot, lambda: screen.summaries is not before, "the runs list to refresh while a run is live")
    await wait_for(pilot, lambda: "Refresh" in screen_text(pilot.app).splitlines()[-1], "the footer's keys")
    await settle(pilot)


def finished_trials(run: Path) -> int:
    return len({item.number for item in read_journal(run / "events.jsonl").events if isinstance(item, TrialFinished)})


def last_step(run: Path) -> int:
    return max(item.step for item in read_journal(run / "events.jsonl").events if isinstance(item, TrainingStep))


def replayed(run: Path, condition: Callable[[DashboardScreen], bool], what: str) -> Callable[[Any], Any]:
    """A run_before for a dashboard following a run in flight: wait until it shows the whole journal."""

    async def wait(pilot: Any) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen) and condition(pilot.app.screen),
                       f"the dashboard of {run.name} shows {what}")
        await pilot.pause(0.3)

    return wait


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_home(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=rows_shown("#recent-runs", 4))


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_dashboard_finished(snap_compare: Callable[..., bool], scene: Scene, size: tuple[int, int]) -> None:
    app = app_for(scene.settings(), attach_run=scene.path("finished"))
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_dashboard_failed(snap_compare: Callable[..., bool], scene: Scene, size: tuple[int, int]) -> None:
    app = app_for(scene.settings(), attach_run=scene.path("failed"))
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_dashboard_running(snap_compare: Callable[..., bool], scene: Scene, size: tuple[int, int]) -> None:
    run = scene.path("running")
    trials = finished_trials(run)
    app = app_for(scene.settings(), attach_run=run)
    assert snap_compare(app, terminal_size=size, run_before=replayed(
        run, lambda screen: len(screen.state.finished_trials) == trials, f"{trials} finished trials"))


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_wizard_basic(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    async def basic(pilot: Any) -> None:
        await pilot.press("n", "b")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#basic-trials").region.height, "the basic form")
        await settle(pilot)

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=basic)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_wizard_advanced(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                         size: tuple[int, int]) -> None:
    async def advanced(pilot: Any) -> None:
        await pilot.press("n", "a")
        await wait_for(pilot, lambda: pilot.app.focused is not None and pilot.app.focused.id, "a focused field")
        await settle(pilot)

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=advanced)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_wizard_summary(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                        size: tuple[int, int]) -> None:
    async def summary(pilot: Any) -> None:
        await pilot.press("n", "b")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#basic-trials").region.height, "the basic form")
        await settle(pilot)
        pilot.app.screen.query_one("#basic-trials").value = "60"
        await wait_for(pilot, lambda: pilot.app.screen.values["optimization.trials"] == 60,
                       "the wizard takes 60 trials")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: "Trials      60 " in screen_text(pilot.app), "the summary of a 60-trial run")
        pilot.app.screen.query_one("#config-path").value = "/etc/heretic-tui/config.toml"
        await wait_for(pilot, lambda: "/etc/heretic-tui/config.toml" in screen_text(pilot.app),
                       "the config path is shown")

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=summary)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_runs(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    async def runs(pilot: Any) -> None:
        await pilot.app.push_screen(RunsScreen())
        await rows_shown("#runs-table", 4)(pilot)
        await just_refreshed(pilot)

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=runs)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_model_browser(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                       size: tuple[int, int]) -> None:
    async def browse(pilot: Any) -> None:
        await pilot.press("b")
        await rows_shown("#models-table", 2)(pilot)

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=browse)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_trial_actions(snap_compare: Callable[..., bool], scene: Scene, size: tuple[int, int]) -> None:
    path = scene.path("finished")

    async def actions(pilot: Any) -> None:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, DashboardScreen)
        best = screen.state.best_trial()
        assert best is not None
        pilot.app.push_screen(TrialActionsScreen(path, best.number, best, best.number in screen.state.pareto))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TrialActionsScreen), "the trial's actions")
        await settle(pilot)

    assert snap_compare(app_for(scene.settings(), attach_run=path), terminal_size=size, run_before=actions)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_finetune_wizard_basic(snap_compare: Callable[..., bool], scene: Scene, size: tuple[int, int]) -> None:
    async def basic(pilot: Any) -> None:
        await pilot.press("f", "b")
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#basic-data"), "the fine-tune wizard's data field")
        pilot.app.screen.query_one("#basic-data").value = str(scene.models)
        entries = data_entries(str(scene.models))
        await wait_for(pilot, lambda: pilot.app.screen.values["finetune.training_data"] == entries,
                       "the fine-tune wizard takes the data folder")

    assert snap_compare(app_for(scene.settings()), terminal_size=size, run_before=basic)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_finetune_dashboard_finished(snap_compare: Callable[..., bool], scene: Scene,
                                     size: tuple[int, int]) -> None:
    app = app_for(scene.settings(), attach_run=scene.path("finetune"))
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_finetune_dashboard_running(snap_compare: Callable[..., bool], scene: Scene,
                                    size: tuple[int, int]) -> None:
    run = scene.path("finetune-running")
    step = last_step(run)
    app = app_for(scene.settings(), attach_run=run)
    assert snap_compare(app, terminal_size=size, run_before=replayed(
        run, lambda screen: screen.state.latest_step is not None and screen.state.latest_step.step == step,
        f"step {step}"))


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_upload(snap_compare: Callable[..., bool], scene: Scene, size: tuple[int, int]) -> None:
    async def upload(pilot: Any) -> None:
        await pilot.app.push_screen(UploadScreen(scene.models / "base-model"))
        await settle(pilot)
        pilot.app.screen.query_one("#upload-repo").value = "alice/base-model-heretic"
        await wait_for(pilot, lambda: "huggingface.co/alice/base-model-heretic" in screen_words(pilot.app),
                       "the upload screen checks the repository name")

    assert snap_compare(app_for(scene.settings()), terminal_size=size, run_before=upload)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_lineage(snap_compare: Callable[..., bool], scene: Scene, size: tuple[int, int]) -> None:
    settings = scene.settings()
    settings.output.runs_directory = str(scene.path("lineage-study").parent)
    merged = scene.path("lineage-finetune") / "merged"

    async def lineage(pilot: Any) -> None:
        await pilot.app.push_screen(LineageScreen(merged))
        await wait_for(pilot, lambda: pilot.app.screen.chain, "the lineage chain")
        await settle(pilot)

    app = app_for(settings, registry_path=scene.root / "registry.sqlite3")
    assert snap_compare(app, terminal_size=size, run_before=lineage)
