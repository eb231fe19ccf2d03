"""Helpers of the run-machinery tests: the command line in a subprocess, and real demo runs made through it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from shared_cache import SHARED_CACHE

DEMO_ARGUMENTS = ["--model", "demo", "--set", "abliteration.refusal_max_tokens=4"]


def environment(home: Path, **extra: str) -> dict[str, str]:
    """The subprocess environment of a test: its own data folder, the shared cache (demo model), no Hub."""
    variables = {name: value for name, value in os.environ.items() if not name.startswith("HERETIC_")}
    variables.update(XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"),
                     XDG_CACHE_HOME=str(SHARED_CACHE), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                     OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    variables.update(extra)
    return variables


def cli(arguments: list[str], home: Path, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heretic_tui.cli", *arguments], cwd=home,
                          env=environment(home, **extra), capture_output=True, text=True, timeout=timeout)


def start_cli(arguments: list[str], home: Path, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "heretic_tui.cli", *arguments], cwd=home,
                            env=environment(home, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def demo_abliteration(run_dir: Path, home: Path, trials: int = 3, *extra: str) -> subprocess.CompletedProcess[str]:
    """A real abliteration of the demo model, headless, into ``run_dir``."""
    return cli(["abliterate", "--headless", *DEMO_ARGUMENTS, "--trials", str(trials), "--run-dir", str(run_dir),
                *extra], home)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 180.0,
               details: Callable[[], str] = lambda: "") -> None:
    """Wait for ``condition`` with a generous deadline; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting until {what}. {details()}")
        time.sleep(0.1)


def log_of(run_dir: Path) -> str:
    log = run_dir / "worker.log"
    return "worker.log:\n" + log.read_text(errors="replace")[-4000:] if log.exists() else "no worker.log"
