"""One writer per run: the starter's lock passes to the worker with no gap, so two starts at once cannot both run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import TrialFinished
from heretic_tui.core.runs.handle import attach
from heretic_tui.core.runs.journal import read_journal
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.runs.run_lock import RunLock
from run_helpers import demo_abliteration, environment, log_of, start_cli

STARTER = """
import subprocess, sys
from pathlib import Path
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.runs.run_lock import RunLock

run = RunDirectory(Path(sys.argv[1]))
sys.stdin.readline()
try:
    lock = RunLock.acquire(run)
except UserInputError as error:
    print("refused", error, flush=True)
    sys.exit(2)
holder = [sys.executable, "-c", "import time; time.sleep(float(__import__('sys').argv[1]))", sys.argv[2]]
child = subprocess.Popen(holder, pass_fds=(lock.descriptor,), start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
lock.record_holder(child.pid, "worker")
lock.close()
print("started", child.pid, flush=True)
"""


def race(run_dir: Path, starters: int, hold_seconds: float) -> list[tuple[int, str]]:
    """Start ``starters`` processes that all try to take the run at the same moment (released by one newline)."""
    processes = [subprocess.Popen([sys.executable, "-c", STARTER, str(run_dir), str(hold_seconds)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(starters)]
    time.sleep(1.0)
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append((process.returncode, out + err))
    return results


def test_concurrent_starters_never_both_take_a_run_and_the_lock_outlives_the_starter(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    for round_number in range(8):
        results = race(run.path, 3, hold_seconds=300)
        winners = [text for code, text in results if code == 0]
        losers = [text for code, text in results if code == 2]
        assert len(winners) == 1 and len(losers) == 2, (round_number, results)
        assert all("refused" in text and "heretic-tui attach" in text for text in losers), losers
        holder = int(winners[0].split()[1])
        assert all(f"worker pid {holder}" in text for text in losers), losers
        with pytest.raises(UserInputError):
            RunLock.acquire(run)
        os.kill(holder, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                RunLock.acquire(run).close()
                break
            except UserInputError:
                assert time.monotonic() < deadline, "the lock was not released when its holder exited"
                time.sleep(0.1)


def trial_count(run: RunDirectory) -> int:
    return len({item.number for item in run.read_events() if isinstance(item, TrialFinished)})


def test_two_resumes_started_together_run_once_and_the_other_exits_2_naming_the_worker(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    made = demo_abliteration(run_dir, tmp_path, trials=2)
    assert made.returncode == 0, made.stderr[-3000:]
    run = RunDirectory(run_dir)
    target = 2
    for round_number in range(3):
        target += 2
        arguments = ["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials", str(target)]
        first, second = start_cli(arguments, tmp_path), start_cli(arguments, tmp_path)
        outcomes = [(process.wait(timeout=600), process.communicate()[1]) for process in (first, second)]
        codes = sorted(code for code, _ in outcomes)
        assert codes == [0, 2], (round_number, outcomes, log_of(run_dir))
        refused = next(text for code, text in outcomes if code == 2)
        worker_pid = json.loads(run.worker_path.read_text())["pid"]
        assert f"worker pid {worker_pid}" in refused, refused
        assert f"heretic-tui attach {run_dir}" in refused, refused
        assert "Traceback" not in refused
        journal = read_journal(run.events_path)
        assert journal.damage is None
        assert run.events_path.read_bytes().endswith(b"\n")
        assert trial_count(run) == target
        assert len(json.loads(run.report_path.read_text())["trials"]) == target
        assert run.read_worker()["exit_code"] == 0
    log = run.log_path.read_text()
    assert "UpdateFinishedTrialError" not in log and "Traceback" not in log, log[-3000:]
    started = [item for item in run.read_events() if item.kind == "job_started"]
    assert len(started) == 4, "one session per round plus the first run, never two at once"


def test_a_resume_or_a_new_start_on_a_live_run_is_refused_before_it_writes_anything(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    made = demo_abliteration(run_dir, tmp_path, trials=2)
    assert made.returncode == 0, made.stderr[-3000:]
    live = start_cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials", "400"],
                     tmp_path)
    run = RunDirectory(run_dir)
    try:
        deadline = time.monotonic() + 180
        while trial_count(run) < 4:
            assert time.monotonic() < deadline and live.poll() is None, log_of(run_dir)
            time.sleep(0.2)
        job_before = run.job_path.read_bytes()
        config_before = run.config_path.read_bytes()
        worker_before = run.worker_path.read_bytes()
        second = subprocess.run([sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", "--resume",
                                 "--run-dir", str(run_dir), "--trials", "5", "--set", "optimization.seed=7"],
                                cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert re.search(r"worker pid \d+", second.stderr) and "heretic-tui attach" in second.stderr
        fresh = subprocess.run([sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", "--model", "demo",
                                "--run-dir", str(run_dir), "--trials", "5"],
                               cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True, timeout=300)
        assert fresh.returncode == 2, fresh.stderr
        assert re.search(r"worker pid \d+", fresh.stderr) and "heretic-tui attach" in fresh.stderr, fresh.stderr
        assert (run.job_path.read_bytes(), run.config_path.read_bytes(), run.worker_path.read_bytes()) == (
            job_before, config_before, worker_before)
    finally:
        attach(run_dir).cancel(grace_seconds=60)
        live.wait(timeout=120)
    assert live.returncode == 130, log_of(run_dir)
    assert not run.worker_alive()
