"""The upload screen against the local fake Hub of tests/test_hub_upload.py: files sent, private flag, URL shown,
inline errors, and the token nowhere on disk or on screen."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input, Switch
from tui_helpers import screen_text, screen_words, wait_for, wait_for_text
from test_hub_upload import (  # noqa: F401  (fixtures used by name)
    TOKEN,
    USER,
    FakeHubState,
    fake_hub,
    files_containing,
    hub_environment,
    make_model_folder,
)

from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.dialogs import ConfirmDialog
from heretic_tui.tui.screens.job_dashboard import JobDashboard
from heretic_tui.tui.screens.runs import RunsScreen
from heretic_tui.tui.screens.upload import UploadScreen

pytestmark = pytest.mark.anyio

EXPECTED_FILES = ["README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


async def test_upload_sends_the_folder_privately_with_progress_and_url(
    fake_hub: FakeHubState, make_app: Callable[..., HereticApp], tmp_path: Path  # noqa: F811
) -> None:
    folder = make_model_folder(tmp_path / "models")
    app = make_app(hub_endpoint=fake_hub.base_url)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_upload(folder)
        screen = await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen) and app.screen,
                                "the upload screen opens")
        await wait_for(pilot, lambda: "4 files" in screen_text(app) and "model card generated" in screen_text(app),
                       "the folder is checked and described")
        await wait_for_text(pilot, "No HF_TOKEN and no cached login", message="the screen says there is no token")
        token = screen.query_one("#upload-token", Input)
        assert token.password
        token.focus()
        token.value = TOKEN
        await pilot.press("enter")
        repo = screen.query_one("#upload-repo", Input)
        await wait_for(pilot, lambda: repo.value == f"{USER}/tiny-model-heretic",
                       "the token's user names the default repository")
        assert screen.query_one("#upload-private", Switch).value, "private by default"
        await pilot.press("ctrl+u")
        await wait_for(pilot, lambda: screen.url is not None and "Uploaded" in screen_text(app),
                       "the upload job ends with the repository's address", timeout=60)
        text = await wait_for_text(pilot, *EXPECTED_FILES, f"{fake_hub.base_url}/{USER}/tiny-model-heretic",
                                   message="every file sent and the address are listed once the progress panel is "
                                   "laid out again")
        assert "1 byte / 1 byte" not in text, "the finished bar counts the bytes sent, not a placeholder"
        assert TOKEN not in text
    hub_repo = fake_hub.repos[f"{USER}/tiny-model-heretic"]
    assert hub_repo.private
    assert sorted(hub_repo.files) == EXPECTED_FILES
    assert fake_hub.create_payloads[0]["visibility"] == "private"
    assert [path for path, _ in screen.sent] == EXPECTED_FILES
    assert files_containing(tmp_path, TOKEN) == []
    assert TOKEN not in repr(app.settings)


async def test_public_upload_is_an_explicit_choice(
    fake_hub: FakeHubState, make_app: Callable[..., HereticApp], tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = make_model_folder(tmp_path)
    app = make_app(hub_endpoint=fake_hub.base_url)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_upload(folder)
        screen = await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen) and app.screen,
                                "the upload screen opens")
        await wait_for(pilot, lambda: screen.user == USER, "HF_TOKEN's user is looked up")
        await wait_for_text(pilot, "HF_TOKEN is set", message="the screen says the token comes from HF_TOKEN")
        repo = screen.query_one("#upload-repo", Input)
        repo.value = f"{USER}/my-public-model"
        screen.query_one("#upload-private", Switch).value = False
        await wait_for(pilot, lambda: "Public" in screen_text(app), "switching privacy off says it is public")
        await pilot.press("ctrl+u")
        await wait_for(pilot, lambda: screen.url is not None, "the upload job ends", timeout=60)
    assert not fake_hub.repos[f"{USER}/my-public-model"].private
    assert files_containing(tmp_path, TOKEN) == []


async def test_bad_folder_and_repo_name_are_shown_and_nothing_is_sent(
    fake_hub: FakeHubState, make_app: Callable[..., HereticApp], tmp_path: Path  # noqa: F811
) -> None:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text("{}", encoding="utf-8")
    app = make_app(hub_endpoint=fake_hub.base_url)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_upload(empty)
        screen = await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen) and app.screen,
                                "the upload screen opens")
        await wait_for(pilot, lambda: "without weights" in screen_words(app), "a folder without weights is refused")
        screen.query_one("#upload-repo", Input).value = "no-slash"
        await wait_for(pilot, lambda: "owner/model-name" in screen_words(app), "a bad repository name is refused")
        await pilot.press("ctrl+u")
        assert not screen.uploading and screen.job_path is None, "no upload job was started"
    assert not any(call.startswith("POST") for call in fake_hub.api_calls)


async def test_the_upload_is_a_job_that_outlives_the_app_and_can_be_reopened(
    fake_hub: FakeHubState, make_app: Callable[..., HereticApp], tmp_path: Path, runs_folder: Path,  # noqa: F811
) -> None:
    folder = make_model_folder(tmp_path / "models")
    app = make_app(hub_endpoint=fake_hub.base_url)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_upload(folder)
        screen = await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen)
                                and app.screen.query_one("#folder-check") and app.screen, "the upload screen opens")
        screen.query_one("#upload-repo", Input).value = f"{USER}/kept-going"
        screen.query_one("#upload-token", Input).value = TOKEN
        await pilot.press("ctrl+u")
        job = await wait_for(pilot, lambda: screen.job_path, "the upload starts as a job with its own run folder")
        assert job.parent == runs_folder and json.loads((job / "job.json").read_text())["kind"] == "upload"
        status_at_quit = RunDirectory(job).status()
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None or isinstance(app.screen, ConfirmDialog),
                       "ctrl+q quits, or first says the upload keeps going")
        if isinstance(app.screen, ConfirmDialog):
            assert f"heretic-tui attach {job}" in app.screen.message
            await pilot.press("y")
            await wait_for(pilot, lambda: app.return_code is not None, "y quits")
    assert status_at_quit == "running", "the app was quit while the upload was still going"
    deadline = time.monotonic() + 60
    while RunDirectory(job).status() == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert RunDirectory(job).status() == "finished", "the upload finished after the app had quit"
    assert sorted(fake_hub.repos[f"{USER}/kept-going"].files) == EXPECTED_FILES
    assert files_containing(tmp_path, TOKEN) == [], "the token is in no file of the run folder or anywhere else"

    again = make_app(hub_endpoint=fake_hub.base_url)
    async with again.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(again.screen, RunsScreen) and "upload:" in screen_text(again),
                       "the runs list shows the upload")
        again.open_dashboard(job)
        await wait_for(pilot, lambda: isinstance(again.screen, JobDashboard) and again.screen.state.status == "finished"
                       and f"{USER}/kept-going" in screen_text(again), "the upload reopens with its repository")
