"""Helpers shared by the TUI tests: a fixed clock and memory probe, and ways to wait for the app and read it.

Screens show times, durations and memory; fixing all three makes Pilot assertions and screenshots identical on
every machine. Tests wait on workers and on conditions (``wait_until``), never on wall-clock sleeps alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from recorded_runs import START

from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.resources import GpuMemory, ResourceProbe, ResourceSnapshot

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
