"""Shared fixtures: an isolated home for every test (no real user folders, no Hub access) and tiny models."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TQDM_DISABLE", "1")

from shared_cache import SHARED_CACHE  # noqa: E402


WORKER_MODULE = "heretic_tui.core.runs.worker"


def workers_under(folders: list[Path]) -> list[int]:
    """Pids of the worker processes (and their supervisors) whose run folder lies in one of ``folders``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            arguments = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        inside = any(argument == str(folder) or argument.startswith(f"{folder}{os.sep}")
                     for folder in folders for argument in arguments)
        if WORKER_MODULE in arguments and inside:
            found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def reap_workers(request: pytest.FixtureRequest, isolated_home: Path) -> Iterator[None]:
    """Kill the workers a test leaves behind in its folders when it ends.

    A test that fails half-way (a timeout while it waits for a worker) would otherwise leave a worker training for
    hours on the 2 cores CI has, and every later test would run at half speed (one such worker made a green 11
    minute suite take 27 and time out three tests). Workers of session-scoped fixtures live elsewhere.
    """
    yield
    folders = [isolated_home]
    tmp_path = getattr(request.node, "funcargs", {}).get("tmp_path")
    if tmp_path is not None:
        folders.append(tmp_path)
    for pid in workers_under(folders):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point user data/config folders at a temporary home; the cache (demo model) is shared by the session."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(SHARED_CACHE))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    for variable in list(os.environ):
        if variable.startswith("HERETIC_"):
            monkeypatch.delenv(variable)
    monkeypatch.chdir(home)
    return home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from model_factory import ARCHITECTURES, build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build_tiny_model(name, root / name) for name in ARCHITECTURES}
