"""Helpers shared by the TUI tests: a fixed clock and memory probe, and ways to wait for the app and read it.

Screens show times, durations and memory; fixing all three makes Pilot assertions and screenshots identical on
every machine. Tests wait for conditions (``wait_for``), never on a fixed ``pause()`` before an assertion: on a
loaded machine a redraw can take longer than any fixed pause, and a wait that falls through silently turns into a
confusing failure later (or a test that passes without checking anything).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from recorded_runs import FIXED_NOW  # noqa: F401 - the clock of every TUI test, re-exported here

from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.resources import GpuMemory, ResourceProbe, ResourceSnapshot

GIB = 2**30


class FixedResourceProbe(ResourceProbe):
    """Always the same memory figures."""

    def sample(self, worker_pid: int | None) -> ResourceSnapshot:
        return ResourceSnapshot(
            ram_used_bytes=12 * GIB,
            ram_total_bytes=64 * GIB,
            worker_ram_bytes=3 * GIB if worker_pid else None,
            gpus=(GpuMemory(0, "NVIDIA H100", 21 * GIB, 80 * GIB),),
        )


WAIT_SECONDS = 30.0
"""How long a wait gives the app by default: generous, because waits end as soon as their condition holds and the
suite shares two cores with other work; a real hang still fails well inside pytest's own timeout."""
POLL_SECONDS = 0.05
"""How often a wait looks at its condition again, letting the app process its messages in between."""


async def wait_for(pilot: Any, condition: Callable[[], Any], message: str, timeout: float = WAIT_SECONDS) -> Any:
    """Let the app process messages until ``condition()`` is truthy and return its value.

    A condition that raises (a widget not mounted yet, a screen not pushed yet) counts as not met yet. When the
    deadline passes the test fails with ``message``, the last value or error the condition gave, the screen that
    was showing and what it showed, so a failure on a CI machine explains itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            outcome: Any = condition()
            seen = repr(outcome)
        except Exception as error:  # noqa: BLE001 - any error means "not yet"; it is reported at the deadline
            outcome, seen = None, f"{type(error).__name__}: {error}"
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout:g}s; the condition gave {seen}; "
                                 f"{describe_screen(pilot.app)})")
        await pilot.pause(POLL_SECONDS)


async def wait_until(pilot: Any, condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    """``wait_for`` without a message of its own; prefer ``wait_for`` and say what is awaited."""
    await wait_for(pilot, condition, "the awaited condition never held", timeout)


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


FRAME_CHARACTERS = re.compile("[\u2500-\u259f\u2b58]")
"""Box drawing and block characters: panel borders, dialog frames, scrollbars and button edges."""


def screen_words(app: HereticApp) -> str:
    """The screen's words in reading order with frames removed and every run of whitespace one space.

    A message that wraps (a long path in a dialog wraps at a point that depends on the path's length, so on another
    machine it wraps elsewhere) is found whole: ``"is not a heretic-tui run" in screen_words(app)`` holds however
    the dialog wrapped it. Text beside another panel on the same rows interleaves with it, so keep phrases short or
    read the widget itself.
    """
    return " ".join(FRAME_CHARACTERS.sub(" ", screen_text(app)).split())


async def wait_for_text(pilot: Any, *phrases: str, message: str, words: bool = False,
                        timeout: float = WAIT_SECONDS) -> str:
    """Wait until the screen shows every phrase and return what it shows then.

    A widget's new content and its new size reach the screen in separate frames on a loaded machine (a table has
    its rows but not yet its redraw, a panel its new text but its old height), so a test that reads the screen once
    after ``settle`` can read the frame in between. This reads it again until the text is there, as a person would
    look again. ``words`` compares with ``screen_words`` (frames removed, wrapping ignored) instead of the raw text.
    """
    read = screen_words if words else screen_text

    def shown() -> str:
        text = read(pilot.app)
        return text if all(phrase in text for phrase in phrases) else ""

    missing = ", ".join(repr(phrase) for phrase in phrases)
    return await wait_for(pilot, shown, f"{message} (the screen should show {missing})", timeout)


def describe_screen(app: HereticApp) -> str:
    """Which screen is showing and its text, for failure messages (never raises: it runs while a test fails)."""
    screen = app.screen
    try:
        text = screen_text(app)
    except Exception as error:  # noqa: BLE001 - a screen that cannot render yet is described as such
        text = f"(cannot render yet: {type(error).__name__}: {error})"
    return f"the screen is {type(screen).__name__} and shows:\n{text}"
