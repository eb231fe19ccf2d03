"""Upload as a detached job against the fake Hub: the events the worker writes, resume, skip, cancel, no token.

Every assertion is on what the core produced (the worker's events.jsonl, report.json, what the fake Hub received),
never on a callback the test wrote itself.
"""

from __future__ import annotations

import io
import os
import signal
import threading
from pathlib import Path

import pytest

from heretic_tui.core.errors import EXIT_CANCELLED, EXIT_NETWORK, EXIT_OK
from heretic_tui.core.runs.events import (
    ArtifactWritten,
    FileProgress,
    JobCancelled,
    JobError,
    JobFinished,
    JobStarted,
    PhaseStarted,
)
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.job_kinds import job_kind, start_job_of_kind
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings
from heretic_tui.core.shipping.upload_job import start_upload
from test_hub_upload import TOKEN, USER, FakeHubState, fake_hub, files_containing, hub_environment  # noqa: F401
from test_hub_upload import make_model_folder

FILES = ["README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
JOB_SECONDS = 120


def finished(handle: JobHandle) -> int:
    code = handle.wait(timeout=JOB_SECONDS)
    assert code is not None, f"the upload job did not end within {JOB_SECONDS} s:\n" + \
        handle.run.log_path.read_text(encoding="utf-8")
    return code


def test_the_worker_reports_every_phase_and_file_and_keeps_no_token(fake_hub: FakeHubState, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "models")
    handle = start_upload(folder, f"{USER}/tiny-job", token=TOKEN, run_dir=tmp_path / "run")
    assert finished(handle) == EXIT_OK, handle.run.log_path.read_text(encoding="utf-8")

    events = handle.run.read_events()
    assert [item.phase for item in events if isinstance(item, PhaseStarted)] == [
        name for name, _ in job_kind("upload").phases]
    sizes = {name: (folder / name).stat().st_size for name in FILES}
    done = [item for item in events if isinstance(item, FileProgress) and item.state == "sent"]
    assert [(item.path, item.done, item.size) for item in done] == [(name, sizes[name], sizes[name]) for name in FILES]
    assert done[-1].total_done == done[-1].total == sum(sizes.values())
    weights = [item for item in events if isinstance(item, FileProgress) and item.path == "model.safetensors"]
    assert (weights[0].state, weights[0].done) == ("sending", 0), "a file is announced before it is sent"
    assert isinstance(events[-1], JobFinished)
    summary = events[-1].summary
    assert (summary["url"], summary["sent"], summary["already_on_hub"]) == (
        f"{fake_hub.base_url}/{USER}/tiny-job", len(FILES), 0)
    assert handle.run.read_report() == summary
    assert [item.path for item in events if isinstance(item, ArtifactWritten)] == [summary["url"]]
    assert sorted(fake_hub.repos[f"{USER}/tiny-job"].files) == FILES and fake_hub.repos[f"{USER}/tiny-job"].private
    assert files_containing(tmp_path, TOKEN) == [] and files_containing(Path(os.environ["XDG_DATA_HOME"]), TOKEN) == []


def test_a_failed_upload_resumes_without_sending_the_weights_again(fake_hub: FakeHubState, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit fails after the weights reached LFS storage; the resume (the kind's settings-only start, as the
    TUI's runs list calls it, with the cached token) commits everything and sends no weights twice."""
    folder = make_model_folder(tmp_path / "models")
    fake_hub.failures["commit"] = 500
    settings = Settings()
    settings.hub.request_retries = 0
    handle = start_upload(folder, f"{USER}/resumed", token=TOKEN, run_dir=tmp_path / "run", settings=settings)
    assert finished(handle) == EXIT_NETWORK
    failure = handle.run.read_events()[-1]
    assert isinstance(failure, JobError) and "HTTP 500" in failure.message and "--resume --run-dir" in failure.message
    assert len(fake_hub.lfs_puts) == 1 and not fake_hub.commits

    del fake_hub.failures["commit"]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    resumed = start_job_of_kind("upload", settings, tmp_path / "run", resume=True)
    assert finished(resumed) == EXIT_OK, resumed.run.log_path.read_text(encoding="utf-8")
    session = resumed.run.read_events()[[isinstance(item, JobStarted) for item in
                                         resumed.run.read_events()].index(True, 1):]
    assert isinstance(session[0], JobStarted) and session[0].resumed
    assert len(fake_hub.lfs_puts) == 1, "the weights already in LFS storage were not sent again"
    assert [sorted(commit["files"]) for commit in fake_hub.commits] == [FILES]
    assert files_containing(tmp_path, TOKEN) == []


def test_a_second_upload_of_the_same_folder_sends_nothing(fake_hub: FakeHubState, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "models")
    assert finished(start_upload(folder, f"{USER}/twice", token=TOKEN, run_dir=tmp_path / "first")) == EXIT_OK
    again = start_upload(folder, f"{USER}/twice", token=TOKEN, run_dir=tmp_path / "second")
    assert finished(again) == EXIT_OK
    summary = again.run.read_report() or {}
    assert (summary.get("sent"), summary.get("already_on_hub")) == (0, len(FILES))
    states = {item.state for item in again.run.read_events() if isinstance(item, FileProgress)}
    assert states == {"already on the Hub"} and len(fake_hub.commits) == 1


def test_resume_refuses_another_folder_or_repository(fake_hub: FakeHubState, tmp_path: Path) -> None:
    from heretic_tui.core.errors import UserInputError

    folder = make_model_folder(tmp_path / "models")
    assert finished(start_upload(folder, f"{USER}/one", token=TOKEN, run_dir=tmp_path / "run")) == EXIT_OK
    with pytest.raises(UserInputError, match="sends .*one \\(repository\\), not alice/other"):
        start_upload(None, f"{USER}/other", token=TOKEN, run_dir=tmp_path / "run", resume=True)
    with pytest.raises(UserInputError, match="needs --run-dir|--resume needs"):
        start_upload(None, None, token=TOKEN, resume=True)


def test_ctrl_c_cancels_the_transfer_in_flight_with_exit_130(
    fake_hub: FakeHubState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    """The Hub takes the weights' PUT and never answers; Ctrl-C in the follower must end the job at once."""
    from heretic_tui.cli.main import main

    fake_hub.hang.add("lfs-put")
    folder = make_model_folder(tmp_path / "models")

    def interrupt_once_the_transfer_hangs() -> None:
        if fake_hub.reached("lfs-put").wait(JOB_SECONDS):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_the_transfer_hangs, daemon=True).start()
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    with pytest.raises(SystemExit) as caught:
        main(["upload", str(folder), "--repo", f"{USER}/cancelled", "--run-dir", str(tmp_path / "run"),
              "--headless", "--token-stdin"])
    captured = capfd.readouterr()
    assert fake_hub.reached("lfs-put").is_set(), captured.err
    assert caught.value.code == EXIT_CANCELLED, captured.err
    run = RunDirectory(tmp_path / "run")
    assert isinstance(run.read_events()[-1], JobCancelled)
    log = run.log_path.read_text(encoding="utf-8")
    assert "stopping the transfer in flight" in log, "the cancel interrupted the PUT instead of waiting for it"
    assert "Traceback" not in captured.err + log
    assert not fake_hub.commits and TOKEN not in captured.out + captured.err
    assert files_containing(tmp_path, TOKEN) == []
