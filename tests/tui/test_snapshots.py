"""Screenshots of the main screens at 80x24 and 160x48, compared with the accepted ones in __snapshots__.

Everything on screen is fixed: run folders live at one path, journals carry fixed times, the clock and the memory
probe are fakes, and the timezone is UTC. Update after a deliberate change with ``--snapshot-update`` and look at
the SVGs before committing them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tui_helpers import FIXED_NOW, FixedResourceProbe
from model_folders import build_hub_cache, write_model_files
from recorded_runs import write_screen_scene

from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.lineage import LineageScreen
from heretic_tui.tui.screens.upload import UploadScreen
from heretic_tui.tui.screens.runs import RunsScreen
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen

SNAPSHOT_ROOT = Path("/tmp/heretic-tui-snapshots")
SIZES = [(80, 24), (160, 48)]
size_ids = [f"{width}x{height}" for width, height in SIZES]


@pytest.fixture
def snapshot_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    runs = write_screen_scene(SNAPSHOT_ROOT)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cache = SNAPSHOT_ROOT / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(SNAPSHOT_ROOT / "no-demo-model"))
    build_hub_cache(cache, "acme/tiny-chat")
    write_model_files(SNAPSHOT_ROOT / "models" / "base-model", architecture="MistralForCausalLM", template=False)
    settings = Settings()
    settings.output.runs_directory = str(runs)
    settings.output.model_directories = [str(SNAPSHOT_ROOT / "models")]
    yield settings
    shutil.rmtree(SNAPSHOT_ROOT, ignore_errors=True)


def app_for(settings: Settings, **options: Any) -> HereticApp:
    return HereticApp(settings=settings, clock=lambda: FIXED_NOW, resource_probe=FixedResourceProbe(), **options)


async def settled(pilot: Any) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def rows_shown(selector: str, count: int) -> Callable[[Any], Any]:
    """A run_before that waits until the table on the current screen shows ``count`` rows, then settles."""

    async def wait(pilot: Any) -> None:
        for _ in range(200):
            tables = pilot.app.screen.query(selector)
            if tables and tables.first().row_count == count:
                break
            await pilot.pause(0.05)
        await settled(pilot)

    return wait


def run_path(settings: Settings, name: str) -> Path:
    return Path(settings.output.runs_directory) / name


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_home(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=rows_shown("#recent-runs", 4))


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_dashboard_finished(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                            size: tuple[int, int]) -> None:
    app = app_for(snapshot_settings, attach_run=run_path(snapshot_settings, "20260921-141315-demo"))
    assert snap_compare(app, terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_dashboard_failed(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                          size: tuple[int, int]) -> None:
    app = app_for(snapshot_settings, attach_run=run_path(snapshot_settings, "20260921-120000-qwen3-4b-instruct"))
    assert snap_compare(app, terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_dashboard_running(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                           size: tuple[int, int]) -> None:
    app = app_for(snapshot_settings, attach_run=run_path(snapshot_settings, "20260921-150000-mistral-7b"))

    async def replayed(pilot: Any) -> None:
        deadline = 200
        while deadline and not (isinstance(pilot.app.screen, DashboardScreen)
                                and len(pilot.app.screen.state.finished_trials) == 17):
            await pilot.pause(0.05)
            deadline -= 1
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=replayed)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_wizard_basic(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    assert snap_compare(app_for(snapshot_settings), press=["n", "b"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_wizard_advanced(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                         size: tuple[int, int]) -> None:
    assert snap_compare(app_for(snapshot_settings), press=["n", "a", "_"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_wizard_summary(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                        size: tuple[int, int]) -> None:
    async def summary(pilot: Any) -> None:
        await pilot.press("n", "b")
        pilot.app.screen.query_one("#basic-trials").value = "60"
        await pilot.press("ctrl+n")
        pilot.app.screen.query_one("#config-path").value = "/etc/heretic-tui/config.toml"
        await pilot.pause()

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=summary)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_runs(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    async def runs(pilot: Any) -> None:
        await pilot.app.push_screen(RunsScreen())
        await rows_shown("#runs-table", 4)(pilot)

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=runs)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_model_browser(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                       size: tuple[int, int]) -> None:
    async def browse(pilot: Any) -> None:
        await pilot.press("b")
        await rows_shown("#models-table", 2)(pilot)

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=browse)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_trial_actions(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                       size: tuple[int, int]) -> None:
    path = run_path(snapshot_settings, "20260921-141315-demo")

    async def actions(pilot: Any) -> None:
        await settled(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, DashboardScreen)
        best = screen.state.best_trial()
        assert best is not None
        pilot.app.push_screen(TrialActionsScreen(path, best.number, best, best.number in screen.state.pareto))
        await pilot.pause()

    assert snap_compare(app_for(snapshot_settings, attach_run=path), terminal_size=size, run_before=actions)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_finetune_wizard_basic(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                               size: tuple[int, int]) -> None:
    async def basic(pilot: Any) -> None:
        await pilot.press("f", "b")
        pilot.app.screen.query_one("#basic-data").value = str(SNAPSHOT_ROOT / "models")
        await pilot.pause()

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=basic)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_finetune_dashboard_finished(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                                     size: tuple[int, int]) -> None:
    path = SNAPSHOT_ROOT / "finetune-runs" / "20260921-141315-finetune-demo"
    assert snap_compare(app_for(snapshot_settings, attach_run=path), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_finetune_dashboard_running(snap_compare: Callable[..., bool], snapshot_settings: Settings,
                                    size: tuple[int, int]) -> None:
    path = SNAPSHOT_ROOT / "finetune-runs" / "20260921-150000-finetune-running"

    async def replayed(pilot: Any) -> None:
        for _ in range(200):
            screen = pilot.app.screen
            if isinstance(screen, DashboardScreen) and screen.state.latest_step is not None \
                    and screen.state.latest_step.step == 35:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)

    assert snap_compare(app_for(snapshot_settings, attach_run=path), terminal_size=size, run_before=replayed)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_upload(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    async def upload(pilot: Any) -> None:
        await pilot.app.push_screen(UploadScreen(SNAPSHOT_ROOT / "models" / "base-model"))
        await settled(pilot)
        pilot.app.screen.query_one("#upload-repo").value = "alice/base-model-heretic"
        await pilot.pause()

    assert snap_compare(app_for(snapshot_settings), terminal_size=size, run_before=upload)


@pytest.mark.parametrize("size", SIZES, ids=size_ids)
def test_lineage(snap_compare: Callable[..., bool], snapshot_settings: Settings, size: tuple[int, int]) -> None:
    snapshot_settings.output.runs_directory = str(SNAPSHOT_ROOT / "lineage-runs")
    merged = SNAPSHOT_ROOT / "lineage-runs" / "20260921-141315-finetune-trial-3" / "merged"

    async def lineage(pilot: Any) -> None:
        await pilot.app.push_screen(LineageScreen(merged))
        for _ in range(200):
            if pilot.app.screen.chain:
                break
            await pilot.pause(0.05)
        await settled(pilot)

    app = HereticApp(settings=snapshot_settings, clock=lambda: FIXED_NOW, resource_probe=FixedResourceProbe(),
                     registry_path=SNAPSHOT_ROOT / "registry.sqlite3")
    assert snap_compare(app, terminal_size=size, run_before=lineage)
