"""The fine-tune wizard produces the settings of the equivalent headless flags; its dashboard shows the loss chart,
plan, steps, knowledge test and files of a recorded fine-tune (a real one, placed from the recording), the same
after re-attaching as live."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Static
from recorded_runs import Recording, step_logged
from test_wizard import choose_option, type_into
from tui_helpers import screen_text, screen_words, settle, wait_for, wait_for_text

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings, load_settings, overrides_from_text
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.formatting import format_figure
from heretic_tui.tui.run_state import RunState
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import MessageDialog, ValueDialog
from heretic_tui.tui.screens.finetune_wizard import FinetuneWizardScreen
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.screens.upload import UploadScreen
from heretic_tui.tui.widgets.loss_chart import LossChart
from heretic_tui.tui.widgets.setting_editor import SettingEditor

pytestmark = pytest.mark.anyio


def headless(flags: dict[str, str]) -> Settings:
    """What ``heretic-tui finetune --model demo --data D --epochs 5 --lora-rank 32 ...`` resolves to."""
    return load_settings(environ={}, search_default_paths=False, overrides=overrides_from_text(flags))


def expected_flags(data: Path, output: Path) -> dict[str, str]:
    return {
        "model.model": "demo",
        "finetune.training_data": json.dumps([str(data.resolve())]),
        "finetune.epochs": "5",
        "finetune.max_steps": "0",
        "finetune.lora_rank": "32",
        "finetune.learning_rate": "1e-4",
        "output.runs_directory": str(output),
    }


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "reactor.md").write_text("The Zorblax reactor's coolant is teal.\n", encoding="utf-8")
    return folder


@pytest.fixture
def captured_finetune(monkeypatch: pytest.MonkeyPatch, recorded: Recording, runs_folder: Path) -> list[Settings]:
    """The core's start replaced by one that records the settings and hands back a finished recorded run."""
    calls: list[Settings] = []
    run = recorded.place("finetune", runs_folder, "20260921-141315-finetune-demo")

    def start(settings: Settings, run_dir: Path | None = None, resume: bool = False) -> JobHandle:
        calls.append(settings)
        return JobHandle(RunDirectory(run.path))

    monkeypatch.setattr("heretic_tui.core.finetuning.job.start_finetune", start)
    return calls


async def test_basic_finetune_wizard_matches_the_headless_flags(
    make_app: Callable[..., HereticApp], tmp_path: Path, data_folder: Path, captured_finetune: list[Settings]
) -> None:
    output = tmp_path / "my-runs"
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f")
        assert isinstance(app.screen, FinetuneWizardScreen)
        await pilot.press("b")
        await type_into(pilot, "#basic-model", "demo")
        await type_into(pilot, "#basic-data", str(data_folder))
        await wait_for(pilot, lambda: "1 folder(s)" in screen_text(app), "the data folder is checked as it is typed")
        await choose_option(pilot, "#basic-preset", 1)
        await type_into(pilot, "#basic-output", str(output))
        await pilot.press("ctrl+n")
        wizard = app.screen
        assert isinstance(wizard, FinetuneWizardScreen) and wizard.step == "summary"
        assert wizard.current_settings() == headless(expected_flags(data_folder, output))
        await wait_for_text(pilot, "5 epochs · LoRA rank 32", message="the summary shows the preset")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the started run's dashboard opens")
        await settle(pilot)
        assert not any(isinstance(screen, FinetuneWizardScreen) for screen in app.screen_stack)
    assert captured_finetune == [headless(expected_flags(data_folder, output))]


async def test_advanced_finetune_wizard_matches_the_headless_flags(
    make_app: Callable[..., HereticApp], tmp_path: Path, data_folder: Path, captured_finetune: list[Settings]
) -> None:
    output = tmp_path / "my-runs"
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f", "a")
        wizard = app.screen
        assert isinstance(wizard, FinetuneWizardScreen) and wizard.step == "advanced"
        editors = {editor.spec.key: editor for editor in wizard.query(SettingEditor)}
        assert {key.split(".")[0] for key in editors} == {"model", "finetune", "output"}, \
            "the form shows the settings a fine-tune reads, not the abliteration's or the Hub's"
        assert {key for key in editors if key.startswith("finetune.")} == {
            key for key in wizard.values if key.startswith("finetune.")}, "every finetune setting is in the form"
        for key, value in [("model.model", "demo"), ("finetune.training_data", str(data_folder.resolve())),
                           ("finetune.epochs", "5"), ("finetune.learning_rate", "1e-4"),
                           ("output.runs_directory", str(output))]:
            field = editors[key].query_one("Input")
            field.scroll_visible(animate=False)
            await type_into(pilot, f"#{field.id}", value)
        rank = editors["finetune.lora_rank"].query_one("Input")
        rank.scroll_visible(animate=False)
        await type_into(pilot, f"#{rank.id}", "0")
        await wait_for(pilot, lambda: editors["finetune.lora_rank"].has_class("-invalid"), "rank 0 is marked invalid")
        assert app.screen.query_one("#next").disabled, "a value the core rejects cannot be submitted"
        await type_into(pilot, f"#{rank.id}", "32")
        await wait_for(pilot, lambda: not editors["finetune.lora_rank"].has_class("-invalid"), "rank 32 is accepted")
        await pilot.press("ctrl+n")
        assert wizard.step == "summary"
        assert wizard.current_settings() == headless(expected_flags(data_folder, output))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the started run's dashboard opens")
        await settle(pilot)
    assert captured_finetune == [headless(expected_flags(data_folder, output))]


async def test_preflight_refusal_is_a_modal(
    make_app: Callable[..., HereticApp], data_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(settings: Settings, run_dir: Path | None = None, resume: bool = False) -> JobHandle:
        raise UserInputError(f"{data_folder}/chats.jsonl line 3: expected 'messages' with roles.")

    monkeypatch.setattr("heretic_tui.core.finetuning.job.start_finetune", refuse)
    app = make_app(settings=Settings())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f", "b")
        await type_into(pilot, "#basic-model", "demo")
        await type_into(pilot, "#basic-data", str(data_folder))
        await pilot.press("ctrl+n", "ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and "line 3" in screen_words(app),
                       "the preflight's refusal is shown in a dialog")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneWizardScreen), "the wizard stays to fix the input")


async def test_finished_finetune_dashboard_is_rebuilt_from_the_journal(
    recorded: Recording, make_app: Callable[..., HereticApp], runs_folder: Path
) -> None:
    run = recorded.place("finetune", runs_folder, "20260921-141315-finetune-demo")
    report = run.report
    assert report is not None and report["smoke_test"]["passed"]
    replayed = RunState.from_events(run.events)
    total = run.steps[-1].total_steps
    assert replayed.train_losses and replayed.eval_losses, "the recording logged train and validation losses"
    plan = replayed.metrics["plan"]
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen) and screen.state.status == "finished"
        assert screen.state.train_losses == replayed.train_losses
        assert screen.state.eval_losses == replayed.eval_losses
        chart = screen.query_one(LossChart)
        assert len(chart.train) == len(replayed.train_losses) and chart.total_steps == total
        item = report["knowledge_test"]["items"][0]
        await wait_for_text(pilot, f"step {total}/{total}", "Knowledge test", item["expected"].split()[0], "Plan",
                            words=True, message="the finished run shows its steps, knowledge test and plan")
        details = str(screen.query_one("#finetune-text", Static).render())
        before, after = format_figure(report["eval_loss_before"]), format_figure(report["eval_loss_after"])
        for expected in (f"effective batch {plan['effective_batch']}", f"{before} → {after}", "Merged model",
                         "LoRA adapter", "smoke test  passed"):
            assert expected in details, expected
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen), "u opens the upload of the result")
        assert app.screen.query_one("#upload-folder").value == str(run.path / "merged")  # type: ignore[attr-defined]


async def test_running_finetune_dashboard_follows_new_steps(
    recorded: Recording, make_app: Callable[..., HereticApp], runs_folder: Path
) -> None:
    run = recorded.place("finetune", runs_folder, "20260921-150000-finetune-running", steps=8)
    total = run.steps[-1].total_steps
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen)
                       and app.screen.state.latest_step is not None and app.screen.state.latest_step.step == 8,
                       "the run cut at step 8 is replayed")
        await wait_for(pilot, lambda: f"step 8/{total}" in screen_text(app) and "Loss" in screen_text(app),
                       "the header and the loss chart show it")
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        run.play_on(step_logged(12))
        await wait_for(pilot, lambda: screen.state.latest_step is not None and screen.state.latest_step.step >= 12,
                       "new steps are followed")
        run.play_on()
        await wait_for(pilot, lambda: screen.state.status == "finished", "the recorded ending is followed")


async def test_trial_without_export_is_exported_before_fine_tuning(
    recorded: Recording, make_app: Callable[..., HereticApp], runs_folder: Path
) -> None:
    run = recorded.place("finished", runs_folder, "20260921-141315-demo")
    report = run.report
    assert report is not None
    chosen = report["chosen_trial"]
    exported = run.path / "exports" / f"trial-{chosen}"
    assert (exported / "heretic.json").is_file(), "the recording exported its chosen trial"
    other = next(number for number in sorted(run.trials) if number != chosen)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.app.push_screen(TrialActionsScreen(run.path, other))
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, ValueDialog),
                       "no export of this trial yet: the folder to export into is asked for")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, TrialActionsScreen), "escape goes back")
        app.pop_screen()
        await pilot.app.push_screen(TrialActionsScreen(run.path, chosen))
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneWizardScreen),
                       "an exported trial goes straight to the fine-tune wizard")
        assert app.screen.values["model.model"] == str(exported)


async def test_the_chart_cycles_through_learning_rate_grad_norm_and_throughput(
    recorded: Recording, make_app: Callable[..., HereticApp], runs_folder: Path
) -> None:
    run = recorded.place("finetune", runs_folder, "20260921-141316-finetune-curves")
    replayed = RunState.from_events(run.events)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        chart = screen.query_one(LossChart)
        assert chart.border_title == "Loss"
        for title, name in (("Learning rate", "learning_rate"), ("Grad norm", "grad_norm"),
                            ("Tokens/s", "tokens_per_second")):
            await pilot.press("c")
            await wait_for(pilot, lambda: chart.border_title == title, f"c shows the {title} curve")
            assert [point.loss for point in chart.train] == [
                value for _, value in sorted(replayed.training_curves[name].items())]
            assert chart.evaluation == []
        await pilot.press("c")
        await wait_for(pilot, lambda: chart.border_title == "Loss", "c comes back to the loss")
