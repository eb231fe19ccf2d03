"""The wizard produces exactly the settings the equivalent headless flags produce, in both modes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tui_helpers import screen_text, screen_words, settle, wait_for, wait_for_text
from recorded_runs import Recording

from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.abliteration.prompts import DEMO_DEFAULTS
from heretic_tui.core.abliteration.search_plan import random_trial_count
from heretic_tui.core.settings import Settings, describe_type, load_settings, overrides_from_text, setting_fields
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
def captured_start(monkeypatch: pytest.MonkeyPatch, recorded: Recording, runs_folder: Path) -> list[Settings]:
    """Replace the engine's start with one that records the settings and hands back a finished recorded run."""
    calls: list[Settings] = []
    run = recorded.place("finished", runs_folder, "20260921-141315-demo")

    def start(settings: Settings, run_dir: Path | None = None, resume: bool = False) -> JobHandle:
        calls.append(settings)
        return JobHandle(RunDirectory(run.path))

    monkeypatch.setattr("heretic_tui.core.abliteration.job.start_abliteration", start)
    return calls


async def type_into(pilot: Any, selector: str, text: str) -> None:
    """Type short values key by key; long ones (paths) are pasted, which posts the same change events."""
    field = pilot.app.screen.query_one(selector)
    field.focus()
    await wait_for(pilot, lambda: pilot.app.focused is field, f"{selector} takes the focus")
    if len(text) > 8:
        field.value = text
    else:
        field.value = ""
        await pilot.press(*list(text))
    await wait_for(pilot, lambda: field.value == text, f"{selector} holds {text!r}")
    await pilot.pause()  # let the field's change events reach the screen before the next key arrives


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
        random_trials = random_trial_count(wizard.current_settings().optimization)
        assert 0 < random_trials < 25
        await wait_for_text(pilot, "prompts.good_prompts = builtin:harmless@train",
                            f"Trials      25 ({random_trials} random, then TPE)",
                            message="the summary lists the changed settings and how many trials are random search "
                            "before TPE")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the started run's dashboard opens")
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
        abliteration_sections = {"model", "prompts", "abliteration", "optimization", "output"}
        assert set(editors) == {spec.key for spec in setting_fields() if spec.section in abliteration_sections}, \
            "the advanced form shows every setting the abliteration reads, and none of the fine-tune's or the Hub's"
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
        await wait_for(pilot, lambda: editors["optimization.trials"].has_class("-invalid")
                       and "optimization.trials" in wizard.errors, "0 trials is marked invalid")
        assert app.screen.query_one("#next").disabled, "a value the core rejects cannot be submitted"
        await pilot.press("ctrl+n")
        assert wizard.step == "advanced"
        await type_into(pilot, f"#{trials.id}", "25")
        await wait_for(pilot, lambda: not editors["optimization.trials"].has_class("-invalid"),
                       "25 trials is accepted")
        await pilot.press("ctrl+n")
        assert wizard.step == "summary"
        assert wizard.current_settings() == headless(expected_flags(output))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the started run's dashboard opens")
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
        await wait_for(pilot, lambda: "trials = 40" in config.read_text(encoding="utf-8"), "the config is saved")
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
        await wait_for(pilot, lambda: "no config.json" in screen_words(app), "the folder is checked as it is typed")
        wizard = app.screen
        assert isinstance(wizard, WizardScreen)
        wizard.values["model.model"] = str(not_a_model)
        wizard.errors.clear()
        await pilot.press("ctrl+n")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and "config.json" in screen_words(app),
                       "the core's refusal is shown in a dialog")


def focused_editor(app: HereticApp) -> SettingEditor | None:
    node = app.focused
    while node is not None and not isinstance(node, SettingEditor):
        node = node.parent  # type: ignore[assignment]
    return node


def label_of(editor: SettingEditor) -> str:
    """The editor's label as the screen shows it: the setting's name, two spaces, what it takes."""
    return f"{editor.spec.name}  {describe_type(editor.spec)}"


async def test_the_advanced_form_opens_on_its_first_field(make_app: Callable[..., HereticApp]) -> None:
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "a")
        editor = await wait_for(pilot, lambda: focused_editor(app), "a field of the form has focus")
        assert editor.spec.key == "model.model", "typing goes straight into the first setting"


async def test_the_advanced_form_jumps_between_sections(make_app: Callable[..., HereticApp]) -> None:
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "a")
        await wait_for(pilot, lambda: focused_editor(app), "the form has focus")
        for section in ("prompts", "abliteration", "optimization"):
            await pilot.press("ctrl+down")
            editor = await wait_for(pilot, lambda: (focused := focused_editor(app)) is not None
                                    and focused.spec.section == section and focused,
                                    f"ctrl+down moves to the first setting of [{section}]")
            assert editor is next(item for item in app.screen.query(SettingEditor) if item.spec.section == section)
            await wait_for(pilot, lambda: f"[{section}]" in screen_text(app) and label_of(editor) in screen_text(app),
                           f"the [{section}] title and its first setting are in view")
        await pilot.press("ctrl+up")
        await wait_for(pilot, lambda: (focused := focused_editor(app)) is not None
                       and focused.spec.section == "abliteration", "ctrl+up goes back one section")


async def test_the_focused_fields_label_stays_in_view(make_app: Callable[..., HereticApp]) -> None:
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("n", "a")
        await wait_for(pilot, lambda: focused_editor(app), "the form has focus")
        for _ in range(4):
            await pilot.press("ctrl+down")
        await wait_for(pilot, lambda: (focused := focused_editor(app)) is not None
                       and focused.spec.section == "output", "the last section is reached")
        for _ in range(6):
            await pilot.press("shift+tab")
            editor = await wait_for(pilot, lambda: focused_editor(app), "moving back up keeps a field focused")
            await wait_for(pilot, lambda: label_of(editor) in screen_text(app),
                           f"the label of {editor.spec.key} is shown with its field")


async def test_the_advanced_form_checks_a_model_path_as_it_is_typed(
    make_app: Callable[..., HereticApp], tmp_path: Path
) -> None:
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n", "a")
        await wait_for(pilot, lambda: focused_editor(app), "the form has focus")
        missing = tmp_path / "no-such-model"
        await type_into(pilot, "#setting-model-model", str(missing))
        await wait_for(pilot, lambda: "does not exist" in screen_words(app), "a missing folder is said at once")
        assert app.screen.query_one("#next").disabled, "a model that does not exist blocks the summary"
        not_a_model = tmp_path / "documents"
        not_a_model.mkdir()
        await type_into(pilot, "#setting-model-model", str(not_a_model))
        await wait_for(pilot, lambda: "has no config.json" in screen_words(app), "a folder without a model is said")
        await type_into(pilot, "#setting-model-model", "demo")
        await wait_for(pilot, lambda: "built-in demo model" in screen_words(app), "the demo model is recognised")
        assert not app.screen.query_one("#next").disabled
