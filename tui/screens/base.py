"""The base of every full screen: typed access to the app's settings, clock and navigation, and the one way a
screen starts a job from a thread worker and says why it could not."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from textual.app import App
from textual.screen import Screen

from heretic_tui.core.errors import HereticError

if TYPE_CHECKING:
    from heretic_tui.tui.app import HereticApp

ResultType = TypeVar("ResultType")
Started = TypeVar("Started")


def failure_message(error: Exception) -> str:
    """What the user reads about a failure: a HereticError's own paragraph (it names the file, value and fix), any
    other error by its type, since that one is a bug rather than something the user can change."""
    return str(error) if isinstance(error, HereticError) else f"{type(error).__name__}: {error}"


def start_from_thread(app: App[Any], start: Callable[[], Started], started: Callable[[Started], None],
                      failed: Callable[[str], None]) -> None:
    """Run ``start`` (a job start: preflight reads models, prompts or the Hub, so it runs in a thread worker) and
    hand its result to ``started``, or its :func:`failure_message` to ``failed``, on the app's thread.

    Every failure ends here, so a screen never leaves a start half-shown: whatever ``start`` raises becomes the
    message ``failed`` shows, and only a successful start reaches ``started``.
    """
    try:
        result = start()
    except Exception as error:
        app.call_from_thread(failed, failure_message(error))
        return
    app.call_from_thread(started, result)


class HereticScreen(Screen[ResultType]):
    """A screen of heretic-tui; ``heretic`` is ``self.app`` with its real type, so navigation is type-checked."""

    @property
    def heretic(self) -> HereticApp:
        return cast("HereticApp", self.app)

    def start_from_thread(self, start: Callable[[], Started], started: Callable[[Started], None],
                          failed: Callable[[str], None]) -> None:
        """:func:`start_from_thread` on this screen's app; call it from a thread worker."""
        start_from_thread(self.app, start, started, failed)
