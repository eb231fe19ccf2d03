"""One server for the whole session: ``heretic-tui serve --detach`` of the demo model and an abliterated trial.

The trial is the chosen trial of the recorded demo study (tests/tui/recorded_runs.py, recorded once per version of
the core and shared with the TUI tests), so no test trains or searches anything; the server is a real detached
job started through the command line, reached with the official openai client, and stopped once at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tui"))

from recorded_runs import recording  # noqa: E402
from shared_cache import SHARED_CACHE  # noqa: E402

from serving_helpers import API_KEY, Server  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serving")
    study = recording().place("finished", root / "runs", "study")
    report = study.report or {}
    chosen = int(report["chosen_trial"])
    trial = next(item for item in report["trials"] if item["number"] == chosen)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HERETIC_")}
    environment.update(XDG_CACHE_HOME=str(SHARED_CACHE), XDG_DATA_HOME=str(root / "data"),
                       XDG_CONFIG_HOME=str(root / "config"), HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1",
                       OMP_NUM_THREADS="1", HERETIC_SERVE_API_KEY=API_KEY)
    run_dir = root / "server"
    started = subprocess.run(
        [sys.executable, "-m", "heretic_tui.cli", "serve", "base=demo", f"abliterated={study.path}#{chosen}",
         "--port", "0", "--detach", "--run-dir", str(run_dir), "--set", f"output.runs_directory={root / 'runs'}"],
        cwd=root, env=environment, capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, f"serve --detach failed ({started.returncode}):\n{started.stderr[-4000:]}"
    url = started.stdout.strip().splitlines()[-1]
    try:
        yield Server(url, run_dir, study.path, chosen, trial["refusals"] / max(1, report["baseline"]["total"]))
    finally:
        from heretic_tui.core.runs.handle import attach

        handle = attach(run_dir)
        handle.request_cancel()
        handle.wait(timeout=60)

