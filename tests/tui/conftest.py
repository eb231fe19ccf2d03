"""Fixtures for the TUI tests: a fixed clock, a fixed memory probe, UTC, and an app factory.

Screens show times, durations and memory; fixing all three makes Pilot assertions and screenshots identical on
every machine. Tests wait on workers and on conditions (``wait_until``), never on wall-clock sleeps alone.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recorded_runs import START  # noqa: E402

from core.settings import Settings  # noqa: E402
from tui.app import HereticApp  # noqa: E402
from tui.resources import GpuMemory, ResourceProbe, ResourceSnapshot  # noqa: E402

GIB = 2**30
FIXED_NOW = START + 120.0


class FixedResourceProbe(ResourceProbe):
    """Always the same memory figures."""

    def sample(self, worker_pid: int | None) -> ResourceSnapshot:
        return ResourceSnapshot(
            ram_used_bytes=12 * GIB,
            ram_total_bytes=64 * GIB,
            worker_ram_bytes=3 * GIB if worker_pid else None,
            gpus=(GpuMemory(0, "NVIDIA H100", 21 * GIB, 80 * GIB),),
        )


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


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


async def wait_until(pilot: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app process messages until ``condition`` holds; fail with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await pilot.pause(0.05)


async def settle(pilot: Any) -> None:
    """Wait for every worker to finish (scans, replays of ended runs), then for the redraw after them.

    Only for screens whose workers end: a dashboard following a live run keeps its follower until the run ends.
    """
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def screen_text(app: HereticApp) -> str:
    """What the terminal shows, as plain text (for assertions that read like what a person sees)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests run on asyncio (Textual's loop) through the anyio pytest plugin."""
    return "asyncio"
