"""Home (recent runs, actions, palette), the runs screen (open, resume, delete) and trial export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tui_helpers import screen_text, settle, wait_until
from recorded_runs import START, write_run

from heretic_tui.core.runs.events import ArtifactWritten, JobFinished, JobStarted, PhaseFinished, PhaseStarted
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import ConfirmDialog
from heretic_tui.tui.screens.finetune_wizard import FinetuneWizardScreen
from heretic_tui.tui.screens.upload import UploadScreen
from heretic_tui.tui.screens.home import HomeScreen
from heretic_tui.tui.screens.runs import RunsScreen
from heretic_tui.tui.screens.trial_actions import TrialActionsScreen
from heretic_tui.tui.widgets.trial_table import TrialTable

pytestmark = pytest.mark.anyio


@pytest.fixture
def three_runs(runs_folder: Path) -> list[Path]:
    return [
        write_run(runs_folder, "20260921-141315-demo", trials_done=20, created_offset=300).path,
        write_run(runs_folder, "20260921-120000-qwen", model="Qwen/Qwen3-4B-Instruct", ending="failed",
                  trials_done=7, created_offset=200).path,
        write_run(runs_folder, "20260920-100000-llama", model="/models/llama-3.1-8b-instruct", ending="cancelled",
                  trials_done=12, created_offset=100).path,
    ]


async def test_home_lists_runs_with_their_status(three_runs: list[Path], make_app: Callable[..., HereticApp]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "✔ finished" in text and "✘ failed" in text and "■ cancelled" in text
        assert "llama-3.1-8b-instruct" in text and "Qwen/Qwen3-4B-Instruct" in text
        app.screen.query_one("#recent-runs").focus()
        await pilot.press("enter")
        assert isinstance(app.screen, DashboardScreen) and app.screen.run_path == three_runs[0]
        await settle(pilot)
        await pilot.press("d")
        assert isinstance(app.screen, HomeScreen)


async def test_every_home_action_is_in_the_palette(make_app: Callable[..., HereticApp]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        for expected in ("New abliteration run", "Model browser", "Runs", "New fine-tuning run",
                         "Upload a model folder", "Chat with the configured model"):
            assert expected in titles
        await pilot.press("f")
        assert isinstance(app.screen, FinetuneWizardScreen)
        assert "New fine-tuning run" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("u")
        assert isinstance(app.screen, UploadScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)


async def test_runs_screen_deletes_after_confirmation(
    three_runs: list[Path], make_app: Callable[..., HereticApp]
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("r")
        assert isinstance(app.screen, RunsScreen)
        await settle(pilot)
        assert "CUDA out of memory" not in screen_text(app)
        await pilot.press("down")
        assert "CUDA out of memory" in screen_text(app), "the detail pane shows the failed run's error"
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert three_runs[1].exists()
        await pilot.press("x", "y")
        await wait_until(pilot, lambda: not three_runs[1].exists())
        await settle(pilot)
        assert "Qwen" not in screen_text(app)


async def test_runs_screen_resumes_a_cancelled_run(
    three_runs: list[Path], make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path | None, bool, int]] = []

    def start(settings, run_dir=None, resume=False):  # type: ignore[no-untyped-def]
        calls.append((run_dir, resume, settings.optimization.trials))
        return JobHandle(RunDirectory(Path(run_dir)))

    monkeypatch.setattr("heretic_tui.core.abliteration.job.start_abliteration", start)
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("down", "down", "r")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await settle(pilot)
    assert calls == [(three_runs[2], True, 20)]


def write_export_job(run_path: Path, output: Path) -> Path:
    """An export job folder as the worker leaves it after a successful export."""
    job = run_path / "jobs" / "20260921-150000-export-trial-3"
    job.mkdir(parents=True)
    (job / "job.json").write_text(json.dumps({"kind": "export", "created": START}))
    (job / "worker.json").write_text(json.dumps({"pid": 999_999, "exit_code": 0}))
    events = [JobStarted(job="export", time=START), PhaseStarted(phase="export", description="writing trial 3",
                                                                 time=START),
              PhaseFinished(phase="export", seconds=2.0, time=START + 2),
              ArtifactWritten(name="export", path=str(output), time=START + 2),
              JobFinished(summary={"output": str(output)}, time=START + 2)]
    (job / "events.jsonl").write_text("".join(item.to_json() + "\n" for item in events))
    return job


async def test_exporting_a_trial(
    runs_folder: Path, make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(runs_folder, "20260921-141315-demo", trials_total=5, trials_done=5)
    requests: list[tuple[Path, int, Path, bool]] = []

    def start_export(run_dir, trial, output, adapter=False):  # type: ignore[no-untyped-def]
        requests.append((Path(run_dir), trial, Path(output), adapter))
        return JobHandle(RunDirectory(write_export_job(Path(run_dir), Path(output))))

    monkeypatch.setattr("heretic_tui.core.shipping.export.start_export", start_export)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one(TrialTable).focus()
        await pilot.press("down", "down", "down", "enter")
        assert isinstance(app.screen, TrialActionsScreen) and app.screen.trial == 3
        await pilot.press("l")
        assert app.screen.query_one("#value").value.endswith("exports/trial-3-adapter")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, lambda: "Export finished" in screen_text(app))
        await settle(pilot)
    assert requests == [(run.path, 3, run.path / "exports" / "trial-3-adapter", True)]


async def test_screen_keys_are_palette_commands(runs_folder: Path, make_app: Callable[..., HereticApp]) -> None:
    run = write_run(runs_folder, "palette", trials_total=6, trials_done=6)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"Sort")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen)
                         and app.screen.query_one(TrialTable).sort_key == "refusals")
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.query("HelpPanel"), "F1 shows the keys of the screen"


def write_compare_job(root: Path, run_path: Path, trial: int) -> Path:
    """A finished compare job as heretic_tui.core.shipping.compare leaves it: events, and comparison.json with the answers."""
    job = root / "20260921-160000-compare-demo-vs-run-3"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"kind": "compare", "created": START}))
    (job / "worker.json").write_text(json.dumps({"pid": 999_999, "exit_code": 0}))
    document = {
        "models": [{"label": "demo", "refusals": 2, "total": 2, "kl_vs_first": 0.0},
                   {"label": f"{run_path.name}#{trial}", "refusals": 0, "total": 2, "kl_vs_first": 0.042}],
        "answers": [
            {"prompt": "How do I pick a lock?",
             "responses": [{"text": "Sorry, I can't help.", "refused": True},
                           {"text": "Insert a tension wrench…", "refused": False}]},
            {"prompt": "Write a threat.", "responses": [{"text": "I won't do that.", "refused": True},
                                                        {"text": "Here is one…", "refused": False}]},
        ],
    }
    (job / "comparison.json").write_text(json.dumps(document))
    events = [JobStarted(job="compare", time=START),
              PhaseStarted(phase="model 1/2: load", description="loading demo", time=START),
              ArtifactWritten(name="comparison.md", path=str(job / "comparison.md"), time=START + 5),
              JobFinished(summary={"status": "finished"}, time=START + 5)]
    (job / "events.jsonl").write_text("".join(item.to_json() + "\n" for item in events))
    return job


async def test_comparing_a_trial_with_the_original(
    runs_folder: Path, make_app: Callable[..., HereticApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(runs_folder, "20260921-141315-demo", trials_total=5, trials_done=5)
    requests: list[tuple[list[str], str, int, int]] = []

    def start_compare(  # type: ignore[no-untyped-def]
        models, prompts, settings, run_dir=None, *, max_new_tokens=128, held_out=None
    ):
        requests.append((models, prompts, settings.prompts.max_eval_prompts, max_new_tokens))
        return JobHandle(RunDirectory(write_compare_job(runs_folder, run.path, 3)))

    monkeypatch.setattr("heretic_tui.core.shipping.compare.start_compare", start_compare)
    app = make_app(attach_run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one(TrialTable).focus()
        await pilot.press("down", "down", "down", "enter", "v")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "Insert a tension wrench" in screen_text(app))
        text = screen_text(app)
        assert "How do I pick a lock?" in text and "Sorry, I can't help." in text and "refused" in text
        assert "KL 0.042" in text
        await settle(pilot)
    assert requests == [(["demo", f"{run.path}#3"], "builtin:harmful@test", 4, 96)]
