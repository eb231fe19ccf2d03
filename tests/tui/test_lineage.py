"""The lineage view from a registry built on fake runs (base → abliterated export → fine-tuned), and registry
runs whose folder is gone listed as missing on the runs screen."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Static
from tui_helpers import screen_text, wait_until
from recorded_runs import write_finetune_run, write_run

from heretic_tui.core.runs.registry import Registry
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.lineage import LineageScreen
from heretic_tui.tui.screens.runs import RunsScreen

pytestmark = pytest.mark.anyio


def write_lineage_runs(runs: Path) -> tuple[Path, Path]:
    """An abliteration run of a hub model with an exported trial, and a fine-tune of that export."""
    abliteration = write_run(runs, "20260921-120000-qwen3-4b", model="Qwen/Qwen3-4B", trials_total=4, trials_done=4)
    export = abliteration.path / "exports" / "trial-3"
    export.mkdir(parents=True)
    (export / "config.json").write_text("{}")
    (export / "heretic.json").write_text(json.dumps({"source_model": "Qwen/Qwen3-4B", "method": "abliteration",
                                                     "trial": 3, "format": "merged",
                                                     "run_dir": str(abliteration.path)}))
    finetune = write_finetune_run(runs, "20260921-141315-finetune-trial-3", model=str(export), created_offset=100)
    return export, finetune.path / "merged"


async def test_lineage_view_shows_base_abliterated_fine_tuned(
    make_app: Callable[..., HereticApp], runs_folder: Path, tmp_path: Path
) -> None:
    export, merged = write_lineage_runs(runs_folder)
    app = make_app(registry_path=tmp_path / "registry.sqlite3")
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_lineage(merged)
        await wait_until(pilot, lambda: isinstance(app.screen, LineageScreen) and bool(app.screen.chain))
        screen = app.screen
        assert isinstance(screen, LineageScreen)
        assert [model.role for model in screen.chain] == ["base", "abliterated", "fine-tuned"]
        assert screen.chain[0].path == "Qwen/Qwen3-4B" and screen.chain[1].path == str(export.resolve())
        await pilot.pause()
        text = str(screen.query_one("#lineage-view", Static).render())
        assert "fine-tuned" in screen_text(app)
        assert text.index("Qwen/Qwen3-4B") < text.index("trial-3") < text.index("merged")
        assert "trial 3" in text and "◀ this model" in text
        app.open_lineage(export)
        await wait_until(pilot, lambda: isinstance(app.screen, LineageScreen) and app.screen is not screen
                         and bool(app.screen.chain))
        made = app.screen.children_models  # type: ignore[attr-defined]
        assert {Path(model.path).name for model in made} == {"adapter", "merged"}


async def test_runs_screen_lists_registry_runs_whose_folder_is_gone(
    make_app: Callable[..., HereticApp], runs_folder: Path, tmp_path: Path
) -> None:
    registry_path = tmp_path / "registry.sqlite3"
    gone = write_run(runs_folder, "20260921-100000-gone", model="acme/vanished", trials_total=2, trials_done=2)
    write_run(runs_folder, "20260921-110000-kept", trials_total=2, trials_done=2)
    Registry(registry_path).rebuild(runs_folder)
    shutil.rmtree(gone.path)
    app = make_app(registry_path=registry_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.app.push_screen(RunsScreen())
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_until(pilot, lambda: len(screen.summaries) == 2)
        await pilot.pause()
        assert "? missing" in screen_text(app)
        assert screen.summaries[str(gone.path)].status == "missing"
