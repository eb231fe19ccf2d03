"""Fixtures for the TUI tests: UTC, a runs folder, settings pointing at it, an app factory with a fixed clock and
memory probe (see tui_helpers), and the recording of real jobs that tests place runs from (see recorded_runs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recorded_runs import Recording, recording  # noqa: E402
from tui_helpers import FIXED_NOW, FixedResourceProbe  # noqa: E402

from heretic_tui.core.settings import Settings  # noqa: E402
from heretic_tui.tui.app import HereticApp  # noqa: E402


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="session")
def recorded() -> Recording:
    """The real jobs' run folders, recorded once per version of the core (about a minute when it changed):
    ``recorded.place("finished", runs_folder, "name")`` copies one into a test's folder (see recorded_runs)."""
    return recording()


@pytest.fixture
def runs_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(runs_folder: Path) -> Settings:
    settings = Settings()
    settings.output.runs_directory = str(runs_folder)
    return settings


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., HereticApp]:
    def factory(**options: Any) -> HereticApp:
        options.setdefault("settings", settings)
        options.setdefault("clock", lambda: FIXED_NOW)
        options.setdefault("resource_probe", FixedResourceProbe())
        return HereticApp(**options)

    return factory


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests run on asyncio (Textual's loop) through the anyio pytest plugin."""
    return "asyncio"
