"""The wizard produces exactly the settings the equivalent headless flags produce, in both modes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tui_helpers import screen_text, settle, wait_until
from recorded_runs import write_run

from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.abliteration.prompts import DEMO_DEFAULTS
from heretic_tui.core.settings import Settings, load_settings, overrides_from_text
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import MessageDialog
from heretic_tui.tui.screens.wizard import WizardScreen
from heretic_tui.tui.widgets.setting_editor import SettingEditor

pytestmark = pytest.mark.anyio


def headless(flags: dict[str, str]) -> Settings:
    """What ``heretic-tui abliterate --set key=value ...`` resolves to, with no config file or environment."""
    return load_settings(environ={}, search_default_paths=False, overrides=overrides_from_text(flags))


def expected_flags(output: Path) -> dict[str, str]:
    return {
        "model": "demo",
        **DEMO_DEFAULTS,
        "trials": "25",
        "dtypes": "bfloat16",
        "quantization": "none",
        "runs_directory": str(output),
    }


@pytest.fixture
def captured_start(monkeypatch: pytest.MonkeyPatch, runs_folder: Path) -> list[Settings]:
    """Replace the engine's start with one that records the settings and hands back a finished recorded run."""
    calls: list[Settings] = []
    run = write_run(runs_folder, "20260921-141315-demo", trials_total=4, trials_done=4)

    def start(settings: Settings, run_dir: Path | None = None, resume: bool = False) -> JobHandle:
        calls.append(settings)
        return JobHandle(RunDirectory(run.path))

    monkeypatch.setattr("heretic_tui.core.abliteration.job.start_abliteration", start)
    return calls


async def type_into(pilot: Any, selector: str, text: str) -> None:
    """Type short values key by key; long ones (paths) are pasted, which posts the same change events."""
    field = pilot.app.screen.query_one(selector)
    field.focus()
    await pilot.pause()
    if len(text) > 8:
        field.value = text
        await pilot.pause()
        return
    field.value = ""
    await pilot.press(*list(text))


async def choose_option(pilot: Any, selector: str, downs: int) -> None:
    """Open a Select with Enter, move down ``downs`` options, confirm: what a person does with the keyboard."""
    pilot.app.screen.query_one(selector).focus()
    await pilot.press("enter")
    await pilot.press(*(["down"] * downs), "enter")


async def test_basic_wizard_matches_the_headless_flags(
    make_app: Callable[..., HereticApp], tmp_path: Path, captured_start: list[Settings]
) -> None:
    output = tmp_path / "my-runs"
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n")
        assert isinstance(app.screen, WizardScreen)
        await pilot.press("b")
        await type_into(pilot, "#basic-model", "demo")
        await choose_option(pilot, "#basic-prompts", 1)
        await type_into(pilot, "#basic-trials", "25")
        await choose_option(pilot, "#basic-precision", 1)
        await type_into(pilot, "#basic-output", str(output))
        await pilot.press("ctrl+n")
        wizard = app.screen
        assert isinstance(wizard, WizardScreen) and wizard.step == "summary"
        assert wizard.current_settings() == headless(expected_flags(output))
        assert "prompts.good_prompts = builtin:harmless@train" in screen_text(app)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await settle(pilot)
        assert not any(isinstance(screen, WizardScreen) for screen in app.screen_stack), "the wizard made way"
    assert captured_start == [headless(expected_flags(output))]


async def test_advanced_wizard_matches_the_headless_flags(
    make_app: Callable[..., HereticApp], tmp_path: Path, captured_start: list[Settings]
) -> None:
    output = tmp_path / "my-runs"
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "a")
        wizard = app.screen
        assert isinstance(wizard, WizardScreen) and wizard.step == "advanced"
        editors = {editor.spec.key: editor for editor in wizard.query(SettingEditor)}
        assert len(editors) == len(list(__import__("heretic_tui.core.settings", fromlist=["setting_fields"]).setting_fields()))
        for key, value in [("prompts.good_prompts", DEMO_DEFAULTS["good_prompts"]),
                           ("prompts.bad_prompts", DEMO_DEFAULTS["bad_prompts"]),
                           ("prompts.good_eval_prompts", DEMO_DEFAULTS["good_eval_prompts"]),
                           ("prompts.bad_eval_prompts", DEMO_DEFAULTS["bad_eval_prompts"]),
                           ("model.dtypes", "bfloat16"),
                           ("output.runs_directory", str(output))]:
            field = editors[key].query_one("Input")
            field.scroll_visible(animate=False)
            await type_into(pilot, f"#{field.id}", value)
        trials = editors["optimization.trials"].query_one("Input")
        await type_into(pilot, f"#{trials.id}", "0")
        await pilot.pause()
        assert editors["optimization.trials"].has_class("-invalid")
        assert "too small" in screen_text(app) or "optimization.trials" in wizard.errors
        assert app.screen.query_one("#next").disabled, "a value the core rejects cannot be submitted"
        await pilot.press("ctrl+n")
        assert wizard.step == "advanced"
        await type_into(pilot, f"#{trials.id}", "25")
        await pilot.pause()
        assert not editors["optimization.trials"].has_class("-invalid")
        await pilot.press("ctrl+n")
        assert wizard.step == "summary"
        assert wizard.current_settings() == headless(expected_flags(output))
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await settle(pilot)
    assert captured_start == [headless(expected_flags(output))]


async def test_basic_answers_carry_over_to_the_advanced_form(make_app: Callable[..., HereticApp]) -> None:
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "b")
        await type_into(pilot, "#basic-trials", "33")
        await pilot.press("escape", "a")
        wizard = app.screen
        assert isinstance(wizard, WizardScreen) and wizard.step == "advanced"
        assert wizard.query_one("#setting-optimization-trials").value == "33"  # type: ignore[attr-defined]


async def test_saving_keeps_comments_and_a_backup(make_app: Callable[..., HereticApp], tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("# my notes about this box\n[optimization]\ntrials = 7\n", encoding="utf-8")
    app = make_app(settings=Settings(), config_path=config)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "b")
        await type_into(pilot, "#basic-trials", "40")
        await pilot.press("ctrl+n", "ctrl+s")
        await pilot.pause()
    text = config.read_text(encoding="utf-8")
    assert "# my notes about this box" in text and "trials = 40" in text
    assert (tmp_path / "config.toml.bak").read_text(encoding="utf-8").endswith("trials = 7\n")
    assert load_settings(config, environ={}, search_default_paths=False).optimization.trials == 40


async def test_a_model_the_core_rejects_is_shown_as_a_modal(
    make_app: Callable[..., HereticApp], tmp_path: Path
) -> None:
    not_a_model = tmp_path / "empty-folder"
    not_a_model.mkdir()
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "b")
        await type_into(pilot, "#basic-model", str(not_a_model))
        await pilot.pause()
        assert "no config.json" in screen_text(app)
        wizard = app.screen
        assert isinstance(wizard, WizardScreen)
        wizard.values["model.model"] = str(not_a_model)
        wizard.errors.clear()
        await pilot.press("ctrl+n")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert "config.json" in screen_text(app)
