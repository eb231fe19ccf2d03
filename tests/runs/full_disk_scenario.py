"""Run inside ``unshare -rm`` by test_run_folder_storage: a tiny tmpfs that fills at the start and mid-run.

Usage: python full_disk_scenario.py DISK RESULTS_JSON. Mounts a tmpfs on DISK, drives the command line through
each step and writes what every step returned into RESULTS_JSON for the test to judge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from heretic_tui.core.runs.events import TrialFinished  # noqa: E402
from heretic_tui.core.runs.journal import read_journal  # noqa: E402
from heretic_tui.core.runs.run_directory import RunDirectory  # noqa: E402

DEMO = ["--model", "demo", "--set", "abliteration.refusal_max_tokens=4"]


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heretic_tui.cli", *arguments], capture_output=True, text=True,
                          timeout=600)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses any more, in ever smaller pieces down to one byte."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    try:
        descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    except OSError:
        return filler
    try:
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(descriptor)
    return filler


def trials(run: RunDirectory) -> list[int]:
    return sorted({item.number for item in run.read_events() if isinstance(item, TrialFinished)})


def main() -> None:
    disk, results_path = Path(sys.argv[1]), Path(sys.argv[2])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    results: dict[str, Any] = {}
    run = RunDirectory(disk / "run")
    start = ["abliterate", "--headless", *DEMO, "--trials", "2", "--run-dir", str(run.path)]

    filler = fill(disk)
    failed = cli(*start)
    left = sorted(path.name for path in run.path.iterdir()) if run.path.exists() else []
    results["start on a full disk"] = {"code": failed.returncode, "stderr": failed.stderr[-3000:], "left": left}
    filler.unlink(missing_ok=True)
    again = cli(*start)
    results["the same start once there is space"] = {"code": again.returncode, "stderr": again.stderr[-3000:]}

    follower = subprocess.Popen([sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", "--resume",
                                 "--run-dir", str(run.path), "--trials", "400"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(trials(run)) < 4 and time.monotonic() < deadline and follower.poll() is None:
        time.sleep(0.2)
    filler = fill(disk)
    _, stderr = follower.communicate(timeout=600)
    data = run.events_path.read_bytes()
    results["the disk fills during the trials"] = {
        "code": follower.returncode, "stderr": stderr[-3000:], "worker": run.read_worker(),
        "temporaries": sorted(path.name for path in run.path.glob(".*.tmp-*")),
        "journal_damage": read_journal(run.events_path).damage, "journal_ends_whole": data.endswith(b"\n"),
        "trials": trials(run), "sizes": {path.name: path.stat().st_size for path in run.path.iterdir()},
        "log": run.log_path.read_text(errors="replace")[-3000:],
    }
    target = len(trials(run)) + 1

    filler.unlink(missing_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    read_only = cli("abliterate", "--headless", "--resume", "--run-dir", str(run.path), "--trials", str(target))
    results["resume on a read-only disk"] = {"code": read_only.returncode, "stderr": read_only.stderr[-3000:]}
    subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)

    resumed = cli("abliterate", "--headless", "--resume", "--run-dir", str(run.path), "--trials", str(target))
    results["resume once there is space"] = {
        "code": resumed.returncode, "stderr": resumed.stderr[-3000:], "trials": trials(run), "target": target,
        "journal_damage": read_journal(run.events_path).damage, "status": run.status(),
    }
    results_path.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
