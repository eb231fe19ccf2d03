"""A follower watches the worker itself, not only the supervisor it started, and ends with the real outcome."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil

from heretic_tui.core.runs.events import JobError, TrialFinished
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings
from run_helpers import DEMO_ARGUMENTS, log_of, start_cli, wait_until


def finished_trials(run: RunDirectory) -> int:
    return sum(isinstance(item, TrialFinished) for item in run.read_events())


def supervisor_of(run: RunDirectory) -> int:
    return psutil.Process(json.loads(run.worker_path.read_text())["pid"]).ppid()


def test_killing_the_supervisor_does_not_end_the_followed_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = RunDirectory(run_dir)
    follower = start_cli(["abliterate", "--headless", *DEMO_ARGUMENTS, "--trials", "20", "--run-dir", str(run_dir)],
                         tmp_path)
    wait_until(lambda: finished_trials(run) >= 2, "two trials finished", details=lambda: log_of(run_dir))
    os.kill(supervisor_of(run), signal.SIGKILL)
    _, stderr = follower.communicate(timeout=600)
    assert follower.returncode == 0, stderr[-3000:] + log_of(run_dir)
    assert "stopped with exit code -9" not in stderr and "killed by SIGKILL" not in stderr
    assert any(line.endswith("] finished") for line in stderr.splitlines()), stderr[-3000:]
    assert finished_trials(run) == 20
    assert run.read_worker()["exit_code"] == 0, "the worker records its own end when its supervisor is gone"
    assert run.status() == "finished"


def test_a_worker_gone_with_its_supervisor_is_reported_as_unknown_not_as_the_supervisor_s_code(
        tmp_path: Path) -> None:
    from heretic_tui.core.abliteration.job import start_abliteration

    settings = Settings()
    settings.model.model = "demo"
    settings.optimization.trials = 400
    handle = start_abliteration(settings, tmp_path / "run")
    run = handle.run
    wait_until(lambda: finished_trials(run) >= 2, "two trials finished", details=lambda: log_of(run.path))
    worker = run.worker_pid()
    assert worker is not None and handle.process is not None
    os.kill(handle.process.pid, signal.SIGKILL)
    handle.process.wait(timeout=60)
    assert handle.alive(), "the worker still runs, so the job is alive though its supervisor is dead"
    os.kill(worker, signal.SIGKILL)
    last = list(handle.events())[-1]
    assert isinstance(last, JobError)
    assert f"pid {worker}" in last.message and "nobody recorded how it ended" in last.message
    assert f"supervisor (pid {handle.process.pid}) was killed by SIGKILL" in last.message
    assert last.exit_code is None and handle.exit_code() is None
    assert "exit code -9" not in last.message



def test_a_worker_that_cannot_start_is_reported_with_its_own_code_and_words(tmp_path: Path) -> None:
    import subprocess
    import sys

    from heretic_tui.core.runs.handle import JobHandle

    run = RunDirectory(tmp_path)
    run.job_path.write_text('{"kind": "compare", "arguments": {}}')
    with open(run.log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "heretic_tui.core.runs.worker", str(tmp_path),
                                    "--lock-fd", "987"], stdout=log, stderr=subprocess.STDOUT)
    last = list(JobHandle(run, process).events())[-1]
    assert isinstance(last, JobError) and last.exit_code == 2
    assert "exit code 2" in last.message and "It said: The lock handed to the worker" in last.message
