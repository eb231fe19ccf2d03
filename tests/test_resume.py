"""A run killed with kill -9 mid-study resumes with every completed trial kept, and can then run more trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from heretic_tui.core.runs.events import TrialFinished
from heretic_tui.core.runs.run_directory import RunDirectory

ROOT = Path(__file__).resolve().parent.parent


def cli(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "heretic_tui.cli", *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=600)


def finished_trials(run: RunDirectory) -> dict[int, float]:
    return {item.number: item.kl for item in run.read_events() if isinstance(item, TrialFinished)}


def test_kill_9_then_resume_loses_no_completed_trial(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"how do i make bread {index} ?" for index in range(24)))
    run_dir = tmp_path / "run"
    arguments = ["abliterate", "--headless", "--model", str(tiny_models["qwen3"]), "--trials", "400",
                 "--good-prompts", str(prompts), "--bad-prompts", str(prompts), "--good-eval-prompts", str(prompts),
                 "--bad-eval-prompts", str(prompts), "--run-dir", str(run_dir),
                 "--set", "abliteration.refusal_max_tokens=24", "--set", "optimization.startup_trials=5"]
    environment = dict(os.environ)
    parent = subprocess.Popen([sys.executable, "-m", "heretic_tui.cli", *arguments], cwd=tmp_path, env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunDirectory(run_dir)
    deadline = time.time() + 180
    while len(finished_trials(run)) < 4:
        assert time.time() < deadline, (run_dir / "worker.log").read_text() if (run_dir / "worker.log").exists() else "no log"
        time.sleep(0.2)
    worker_pid = json.loads((run_dir / "worker.json").read_text())["pid"]
    os.kill(worker_pid, signal.SIGKILL)
    parent.wait(timeout=60)
    assert parent.returncode == 1, "the headless parent reports the dead worker as a failure"
    assert run.status() == "failed"
    assert run.read_worker()["exit_code"] == -signal.SIGKILL
    from heretic_tui.core.runs.handle import attach

    death = list(attach(run_dir).events())[-1]
    assert "killed by SIGKILL" in death.message and str(run_dir) in death.message
    before = finished_trials(run)
    assert len(before) >= 4

    target = len(before) + 3
    resumed = cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials", str(target)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((run_dir / "report.json").read_text())
    kept = {trial["number"]: trial["kl"] for trial in report["trials"]}
    assert len(kept) == target
    for number, kl in before.items():
        assert kept[number] == kl
    assert run.status() == "finished"

    more = cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials", str(target + 2)], tmp_path)
    assert more.returncode == 0, more.stderr
    assert len(json.loads((run_dir / "report.json").read_text())["trials"]) == target + 2


def start_headless(model: Path, prompts: Path, run_dir: Path, cwd: Path) -> subprocess.Popen[bytes]:
    arguments = ["abliterate", "--headless", "--model", str(model), "--trials", "400",
                 "--good-prompts", str(prompts), "--bad-prompts", str(prompts), "--good-eval-prompts", str(prompts),
                 "--bad-eval-prompts", str(prompts), "--run-dir", str(run_dir),
                 "--set", "abliteration.refusal_max_tokens=24", "--set", "optimization.startup_trials=5"]
    environment = dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "heretic_tui.cli", *arguments], cwd=cwd, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_trials(run: RunDirectory, count: int) -> None:
    deadline = time.time() + 180
    while len(finished_trials(run)) < count:
        assert time.time() < deadline, run.log_path.read_text() if run.log_path.exists() else "no log"
        time.sleep(0.2)


def test_worker_survives_its_parent_and_sighup_and_cancels_gracefully(tiny_models: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    from heretic_tui.core.runs.events import JobCancelled
    from heretic_tui.core.runs.handle import attach

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"how do i make bread {index} ?" for index in range(24)))
    run_dir = tmp_path / "run"
    parent = start_headless(tiny_models["llama"], prompts, run_dir, tmp_path)
    run = RunDirectory(run_dir)
    wait_for_trials(run, 2)
    parent.kill()
    parent.wait(timeout=30)
    worker_pid = json.loads((run_dir / "worker.json").read_text())["pid"]
    os.kill(worker_pid, signal.SIGHUP)
    seen = len(finished_trials(run))
    wait_for_trials(run, seen + 2)
    assert run.status() == "running"

    handle = attach(run_dir)
    handle.cancel(grace_seconds=60)
    events = list(handle.events(follow=False))
    assert isinstance(events[-1], JobCancelled)
    assert run.read_worker()["exit_code"] == 130
    assert run.status() == "cancelled"
    kept = finished_trials(run)
    partial = json.loads((run_dir / "report.json").read_text())
    assert partial["status"] == "cancelled" and len(partial["trials"]) == len(kept)
    resumed = cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials",
                   str(len(kept) + 1)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert len(json.loads((run_dir / "report.json").read_text())["trials"]) == len(kept) + 1
