"""A log that stays on its newest line while the reader has not scrolled up to read older ones.

Textual's ``Log`` scrolls to the end when lines are written while it is at the end, but not when its own height
changes after that (the dashboard lays out its panels once the first events arrive), so a log filled while its
screen mounts stayed a few lines short of its end and then never followed again. This one remembers whether it is
following and scrolls back to the end whenever its size changes; scrolling up stops that, scrolling back to the end
starts it again.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import events
from textual.widgets import Log


class FollowingLog(Log):
    def __init__(self, *, max_lines: int | None = None, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id)
        self.following = True

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> FollowingLog:
        super().write_lines(lines, scroll_end=self.following if scroll_end is None else scroll_end)
        return self

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value < old_value or new_value >= self.max_scroll_y:
            self.following = new_value >= self.max_scroll_y

    def on_resize(self, event: events.Resize) -> None:
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def follow(self) -> None:
        """Jump to the newest line and follow from there (the log panel was just shown or refilled)."""
        self.following = True
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)
