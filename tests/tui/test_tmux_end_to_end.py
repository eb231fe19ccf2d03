"""End to end in a real terminal: wizard → demo run → dashboard → detach and quit → re-attach.

tmux gives the app a real pseudo-terminal, and keys and screen contents go through ``send-keys`` and
``capture-pane`` exactly as a person's would. The test starts a tmux server of its own (``-L``): a server that was
already running would give the shell its own environment instead of the test's (the isolated home, the shared
cache with the demo model). The demo model is built on first use (minutes on a busy two-core machine; it is
cached in the shared test cache afterwards), so this test is marked slow. scripts/setup.sh installs tmux; where it
could not, the test is skipped with the reason, which scripts/run-tests.sh prints (``-rs``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from heretic_tui.core.runs.run_directory import RunDirectory

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
WIDTH, HEIGHT = 120, 36
TRIALS = re.compile(r"Trials \((\d+) done\)")
DEMO_BUILD_SECONDS = 1500


class Terminal:
    """One tmux session, on a tmux server of its own, running a shell; the app is started and restarted in it like
    a person would."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.tmux = ["tmux", "-L", name, "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), "-c",
                        str(folder), "bash --norc --noprofile"], check=True)

    def type(self, *keys: str) -> None:
        for key in keys:
            subprocess.run([*self.tmux, "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.3)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], check=True, capture_output=True,
                              text=True).stdout

    def wait_for(self, condition: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.screen()
            if condition(text):
                return text
            time.sleep(0.5)
        raise AssertionError(f"waited {timeout:.0f}s for {what}; the screen shows:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


def trials_done(text: str) -> int:
    match = TRIALS.search(text)
    return int(match.group(1)) if match else -1


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.skip(f"tmux is not on PATH ({os.environ.get('PATH', '')}), and this test drives the app through it: "
                    "scripts/setup.sh installs it with apt-get where it runs as root or with password-less sudo; "
                    "elsewhere install it by hand (apt-get install -y tmux, brew install tmux)")
    session = Terminal(f"heretic-e2e-{os.getpid()}", tmp_path)
    yield session
    session.close()


def stop_worker(run: Path) -> None:
    try:
        pid = json.loads((run / "worker.json").read_text()).get("pid")
    except (OSError, ValueError):
        return
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def test_demo_run_from_the_wizard_survives_detach_and_reattach(terminal: Terminal, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    app = f"HERETIC_RUNS_DIRECTORY={runs} {sys.executable} -m heretic_tui.cli"
    terminal.type(app, "Enter")
    terminal.wait_for(lambda text: "New abliteration run" in text, 60, "the home screen")

    terminal.type("n", "b")
    terminal.wait_for(lambda text: "1. Model" in text, 20, "the basic wizard")
    terminal.type("Tab", "Tab", "C-u", "4")
    terminal.wait_for(lambda text: "value(s) to fix" not in text, 10, "a valid trial count")
    terminal.type("C-n")
    terminal.wait_for(lambda text: "Summary" in text and "Trials      4" in text, 20, "the summary")
    terminal.type("C-r")
    terminal.wait_for(lambda text: "Progress" in text and "Refusals vs KL" in text, 120, "the dashboard")
    [run] = list(runs.iterdir())
    try:
        shown = terminal.wait_for(lambda text: trials_done(text) >= 1, DEMO_BUILD_SECONDS, "the first trial")
        before = trials_done(shown)

        terminal.type("d")
        terminal.wait_for(lambda text: "Recent runs" in text, 20, "home after detaching")
        terminal.type("q")
        shown = terminal.wait_for(lambda text: "Quit now?" in text or "Recent runs" not in text, 20,
                                  "the app to quit or to ask first")
        if "Quit now?" in shown:
            assert "keeps running" in shown and "heretic-tui attach" in shown, "quitting says how to reattach"
            terminal.type("y")
            shown = terminal.wait_for(lambda text: "Recent runs" not in text, 20, "the app to quit")
            if RunDirectory(run).worker_alive():
                assert "heretic-tui attach" in shown, "a run still live after quitting leaves its reattach command"
        status = json.loads((run / "worker.json").read_text())
        assert "exit_code" not in status or status["exit_code"] == 0, "quitting the app did not stop the run"

        terminal.type(f"{app} attach {run}", "Enter")
        shown = terminal.wait_for(lambda text: trials_done(text) >= before, 120, "the re-attached dashboard")
        assert trials_done(shown) >= before
        assert "failed" not in shown.splitlines()[1]
        finished = terminal.wait_for(lambda text: "✔ finished" in text, 600, "the run to finish")
        assert trials_done(finished) == 4
        terminal.type("d", "q")
    finally:
        stop_worker(run)
