"""A run folder on a full disk: one paragraph and exit 3, nothing left that makes the folder unusable, and the run
resumes once there is space again.

The journal test fails the worker's writes to events.jsonl from inside the worker process (a ``sitecustomize``
on its PYTHONPATH), so it runs everywhere; the disk test fills a real, tiny tmpfs inside an unprivileged user and
mount namespace and is skipped, saying why, where the kernel does not allow one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from heretic_tui.core.runs.events import TrialFinished
from heretic_tui.core.runs.journal import read_journal
from heretic_tui.core.runs.run_directory import STATUS_FINISHED, RunDirectory
from private_tmpfs import tmpfs_problem
from run_helpers import DEMO_ARGUMENTS, cli, demo_abliteration, environment, log_of, start_cli, wait_until

HERE = Path(__file__).resolve().parent

FULL_JOURNAL = textwrap.dedent('''
    """Test hook: once the flag file exists, writes to events.jsonl fail like a full disk (the first one half-done)."""
    import errno
    import os

    _flag = os.environ.get("JOURNAL_TEST_FULL_FLAG")
    if _flag:
        _write = os.write
        _state = {"partial": False}

        def _full_write(descriptor, data):
            if os.path.exists(_flag):
                try:
                    target = os.readlink(f"/proc/self/fd/{descriptor}")
                except OSError:
                    target = ""
                if target.endswith("/events.jsonl"):
                    if not _state["partial"] and len(data) > 1:
                        _state["partial"] = True
                        return _write(descriptor, bytes(data)[: len(data) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return _write(descriptor, data)

        os.write = _full_write
''')


def trials(run: RunDirectory) -> set[int]:
    return {item.number for item in run.read_events() if isinstance(item, TrialFinished)}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the hook finds the journal through /proc/self/fd")
def test_a_journal_that_cannot_be_written_ends_the_worker_cleanly_with_exit_3(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FULL_JOURNAL)
    flag = tmp_path / "journal-full"
    run_dir = tmp_path / "run"
    run = RunDirectory(run_dir)
    follower = start_cli(["abliterate", "--headless", *DEMO_ARGUMENTS, "--trials", "400", "--run-dir", str(run_dir)],
                         tmp_path, PYTHONPATH=str(hook), JOURNAL_TEST_FULL_FLAG=str(flag))
    wait_until(lambda: len(trials(run)) >= 2 or follower.poll() is not None, "two trials finished")
    assert follower.poll() is None, follower.communicate()[1][-3000:] + log_of(run_dir)
    flag.touch()
    _, stderr = follower.communicate(timeout=600)

    assert follower.returncode == 3, stderr[-3000:] + log_of(run_dir)
    assert "Traceback" not in stderr
    assert f"Could not append to the event journal {run.events_path}: the disk is full" in stderr, stderr[-3000:]
    worker = run.read_worker()
    assert worker["exit_code"] == 3 and "the disk is full" in worker["error"]
    assert "error: Could not append to the event journal" in run.log_path.read_text()
    data = run.events_path.read_bytes()
    assert data.endswith(b"\n") and read_journal(run.events_path).damage is None, "a half-done write is cut back"
    assert not list(run_dir.glob(".*.tmp-*"))

    kept = trials(run)
    flag.unlink()
    resumed = cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials",
                   str(max(kept) + 2)], tmp_path, PYTHONPATH=str(hook), JOURNAL_TEST_FULL_FLAG=str(flag))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert kept <= trials(run) and run.status() == STATUS_FINISHED
    assert read_journal(run.events_path).damage is None


def test_a_start_killed_mid_write_leaves_a_folder_that_starts_again(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / f".job.json.tmp-{dead_pid}").write_text('{"kind": "abl')
    (run_dir / f".config.toml.tmp-{dead_pid}").write_text("[model]\n")
    (run_dir / ".lock").write_text(f"starter {dead_pid}\n")
    refused = cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials", "2"], tmp_path)
    assert refused.returncode == 2 and "holds no run yet" in refused.stderr and "without --resume" in refused.stderr
    started = demo_abliteration(run_dir, tmp_path, trials=2)
    assert started.returncode == 0, started.stderr[-3000:]
    (run_dir / f".job.json.tmp-{dead_pid}").write_text('{"kind": "abl')
    resumed = cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials", "3"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list(run_dir.glob(".*.tmp-*"))


def test_a_real_full_disk_at_start_and_mid_run_then_space_comes_back(tmp_path: Path) -> None:
    problem = tmpfs_problem()
    if problem:
        pytest.skip(problem)
    disk = tmp_path / "disk"
    disk.mkdir()
    results = tmp_path / "results.json"
    scenario = subprocess.run(["unshare", "-rm", sys.executable, str(HERE / "full_disk_scenario.py"), str(disk),
                               str(results)], cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True,
                              timeout=1200)
    assert scenario.returncode == 0, scenario.stdout[-3000:] + scenario.stderr[-3000:]
    steps = json.loads(results.read_text())

    full_start = steps["start on a full disk"]
    assert full_start["code"] == 3, full_start
    assert "the disk is full" in full_start["stderr"] and "Traceback" not in full_start["stderr"]
    assert set(full_start["left"]) <= {".lock"}, f"a failed start leaves nothing behind: {full_start['left']}"
    assert steps["the same start once there is space"]["code"] == 0, steps["the same start once there is space"]

    mid_run = steps["the disk fills during the trials"]
    assert mid_run["code"] == 3, mid_run
    assert "the disk is full" in mid_run["stderr"] and "Traceback" not in mid_run["stderr"]
    assert mid_run["worker"]["exit_code"] == 3, "worker.json records the end even on the full disk"
    assert not mid_run["temporaries"], mid_run["temporaries"]
    assert mid_run["journal_damage"] is None and mid_run["journal_ends_whole"]

    read_only = steps["resume on a read-only disk"]
    assert read_only["code"] == 3 and "read-only" in read_only["stderr"], read_only

    after = steps["resume once there is space"]
    assert after["code"] == 0, after
    assert set(mid_run["trials"]) <= set(after["trials"]) and len(after["trials"]) == after["target"]
    assert after["journal_damage"] is None and after["status"] == STATUS_FINISHED
