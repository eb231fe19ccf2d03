"""The base of every full screen: typed access to the app's settings, clock and navigation."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from heretic_tui.tui.app import HereticApp

ResultType = TypeVar("ResultType")


class HereticScreen(Screen[ResultType]):
    """A screen of heretic-tui; ``heretic`` is ``self.app`` with its real type, so navigation is type-checked."""

    @property
    def heretic(self) -> HereticApp:
        return cast("HereticApp", self.app)
