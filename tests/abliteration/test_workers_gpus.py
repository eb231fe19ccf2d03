"""``--gpus all``: one worker per visible GPU on one shared study, each seeing only its own GPU; refused (one
paragraph, exit code 2) without a storage several workers can write, and on a machine without a GPU."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from heretic_tui.cli.main import main
from heretic_tui.core.abliteration import shared_runs
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import Settings, render_config

URL = "postgresql://someone@127.0.0.1:5432/studies"
ROOT = Path(__file__).resolve().parents[2]


def test_without_a_shared_storage_it_is_refused() -> None:
    with pytest.raises(UserInputError, match="--storage postgresql://"):
        shared_runs.start_per_gpu(Settings(), None)
    with pytest.raises(UserInputError, match="SQLite does not take several writers"):
        shared_runs.start_per_gpu(Settings(), "sqlite:///study.db")


def test_without_a_gpu_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserInputError, match="found no CUDA GPU"):
        shared_runs.start_per_gpu(Settings(), URL)


def test_the_visible_gpus_respect_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert shared_runs.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 6")
    assert shared_runs.visible_gpus() == ["4", "6"]


def test_one_worker_per_gpu_the_first_is_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[tuple[str, dict[str, str]]] = []
    run = SimpleNamespace(path=tmp_path / "run")

    def start_shared_run(settings: Settings, storage: str, study: str | None, run_dir: Path | None,
                         environment: dict[str, str]) -> SimpleNamespace:
        started.append(("run", environment))
        return SimpleNamespace(run=run)

    def join_run(settings: Settings, joined: SimpleNamespace, environment: dict[str, str]) -> SimpleNamespace:
        assert joined is run
        started.append(("join", environment))
        return SimpleNamespace(run=SimpleNamespace(path=run.path / "workers" / str(len(started))))

    monkeypatch.setattr(shared_runs, "visible_gpus", lambda: ["0", "1", "2"])
    monkeypatch.setattr(shared_runs, "start_shared_run", start_shared_run)
    monkeypatch.setattr(shared_runs, "join_run", join_run)
    handles = shared_runs.start_per_gpu(Settings(), URL)
    assert len(handles) == 3
    assert started == [("run", {"CUDA_VISIBLE_DEVICES": "0"}), ("join", {"CUDA_VISIBLE_DEVICES": "1"}),
                       ("join", {"CUDA_VISIBLE_DEVICES": "2"})]


@pytest.mark.parametrize("arguments, message", [
    (["--gpus", "all", "--model", "demo"], "--gpus all starts one worker per GPU"),
    (["--join", "somewhere", "--storage", URL], "--join adds a worker to a study that exists"),
    (["--join", URL], "add --study NAME"),
    (["--join", URL, "--study", "name", "--config", str(ROOT / "config.toml")], "cannot be combined with --join"),
    (["--join", "somewhere", "--trials", "40"], "--trials 40 cannot be combined with --join"),
    (["--study", "name", "--model", "demo"], "give the database with --storage URL"),
    (["--storage", "postgresql://someone:secret@127.0.0.1/db", "--model", "demo"], "holds a password"),
])
def test_the_command_line_refuses_what_cannot_work(arguments: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["abliterate", "--headless", *arguments])
    error = capsys.readouterr().err
    assert ended.value.code == 2, error
    assert message in error and "Traceback" not in error
    assert "secret" not in error


def test_a_database_that_does_not_answer_is_one_paragraph_and_leaves_no_run(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as ended:
        main(["abliterate", "--headless", "--model", "demo", "--run-dir", str(run_dir),
              "--storage", f"postgresql://someone@127.0.0.1:{port}/studies"])
    error = capsys.readouterr().err.strip()
    assert ended.value.code == 3, error
    assert "Traceback" not in error and "\n" not in error
    assert f"127.0.0.1:{port}" in error and "Once the database answers, start the command again." in error
    assert not run_dir.exists()


def test_the_settings_a_study_records_for_other_boxes_hold_no_secret() -> None:
    settings = Settings()
    settings.serve.serve_api_key = "key-that-must-stay-here"
    settings.optimization.trials = 33
    recorded = render_config(shared_runs.without_secrets(settings))
    assert "key-that-must-stay-here" not in recorded and "trials = 33" in recorded
    assert settings.serve.serve_api_key == "key-that-must-stay-here"
