"""The lineage view from a registry built on real runs (the demo model → its abliterated export → a fine-tune of
that export, placed from the recording), and registry runs whose folder is gone listed as missing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from recorded_runs import Recording
from textual.widgets import Static
from tui_helpers import screen_text, screen_words, wait_for

from heretic_tui.core.runs.registry import Registry
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.lineage import LineageScreen
from heretic_tui.tui.screens.runs import RunsScreen

pytestmark = pytest.mark.anyio


async def test_lineage_view_shows_base_abliterated_fine_tuned(
    recorded: Recording, make_app: Callable[..., HereticApp], runs_folder: Path, tmp_path: Path
) -> None:
    placed = recorded.place_together({"finished": "20260921-120000-demo", "finetune": "20260921-141315-finetune"},
                                     runs_folder)
    report = placed["finished"].report
    assert report is not None
    trial = report["chosen_trial"]
    export = placed["finished"].path / "exports" / f"trial-{trial}"
    merged = placed["finetune"].path / "merged"
    app = make_app(registry_path=tmp_path / "registry.sqlite3")
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_lineage(merged)
        screen = await wait_for(pilot, lambda: isinstance(app.screen, LineageScreen) and app.screen.chain
                                and app.screen, "the lineage of the fine-tuned model is read from the registry")
        assert isinstance(screen, LineageScreen)
        assert [model.role for model in screen.chain] == ["base", "abliterated", "fine-tuned"]
        assert screen.chain[0].path == "demo" and screen.chain[1].path == str(export.resolve())
        assert screen.chain[2].path == str(merged.resolve())
        await wait_for(pilot, lambda: "fine-tuned" in screen_words(app), "the chain is on screen")
        text = str(screen.query_one("#lineage-view", Static).render())
        assert text.index("demo") < text.index(f"trial-{trial}") < text.index("merged")
        assert f"trial {trial}" in text and "◀ this model" in text
        app.open_lineage(export)
        await wait_for(pilot, lambda: isinstance(app.screen, LineageScreen) and app.screen is not screen
                       and bool(app.screen.chain), "the export's lineage opens")
        made = app.screen.children_models  # type: ignore[attr-defined]
        assert {Path(model.path).name for model in made} == {"adapter", "merged"}, "what was made from the export"


async def test_runs_screen_lists_registry_runs_whose_folder_is_gone(
    recorded: Recording, make_app: Callable[..., HereticApp], runs_folder: Path, tmp_path: Path
) -> None:
    registry_path = tmp_path / "registry.sqlite3"
    gone = recorded.place("cancelled", runs_folder, "20260921-100000-gone")
    recorded.place("finished", runs_folder, "20260921-110000-kept")
    Registry(registry_path).rebuild(runs_folder)
    shutil.rmtree(gone.path)
    app = make_app(registry_path=registry_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.app.push_screen(RunsScreen())
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_for(pilot, lambda: len(screen.summaries) == 2 and "? missing" in screen_text(app),
                       "the registry's run without a folder is listed as missing")
        assert screen.summaries[str(gone.path)].status == "missing"
