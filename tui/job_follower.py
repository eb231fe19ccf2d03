"""Following a run's journal from a Textual thread worker, one message per event.

The thread only reads the journal (through :meth:`heretic_tui.core.runs.handle.JobHandle.events`) and posts messages; widgets are
touched only by the screen that receives them. ``events()`` waits inside the generator while the worker is quiet,
so a follower that could not be stopped would block the app's exit for as long as the run lasts: the handle used
for following reports the worker as gone once the follower is told to stop, which ends the generator within one
poll.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from textual.message import Message

from heretic_tui.core.runs.events import Event
from heretic_tui.core.api import JobHandle, RunDirectory

POLL_SECONDS = 0.1


class JobEventMessage(Message):
    """One event of the run at ``run_path``, in journal order; ``generation`` tells a restarted follower's apart."""

    def __init__(self, run_path: Path, event: Event, generation: int = 0) -> None:
        super().__init__()
        self.run_path = run_path
        self.event = event
        self.generation = generation


class JobFollowEnded(Message):
    """The follower reached the end of the run (terminal event or dead worker) or was stopped."""

    def __init__(self, run_path: Path, stopped: bool, generation: int = 0) -> None:
        super().__init__()
        self.run_path = run_path
        self.stopped = stopped
        self.generation = generation


class StoppableHandle(JobHandle):
    """A handle whose worker counts as gone once ``stop`` is set, so a waiting ``events()`` returns promptly."""

    def __init__(
        self, run: RunDirectory, process: subprocess.Popen[bytes] | None, stop: threading.Event
    ) -> None:
        super().__init__(run, process)
        self.stop = stop

    def alive(self) -> bool:
        if self.stop.is_set():
            return False
        return super().alive()


def follow_run(
    handle: JobHandle,
    deliver: Callable[[Event], None],
    stop: threading.Event,
    follow: bool = True,
) -> bool:
    """Replay the whole journal (every attempt of a resumed run), then follow it; False if stopped early.

    ``deliver`` is called in the calling thread for each event (the TUI passes ``post_message``). The replay always
    starts at the beginning of the journal, even for the handle of a just-resumed job (whose own offset points at
    the new attempt), because the dashboard shows the trials of every attempt.
    """
    stoppable = StoppableHandle(handle.run, handle.process, stop)
    for item in stoppable.events(follow=follow, poll_seconds=POLL_SECONDS):
        if stop.is_set():
            return False
        deliver(item)
    return not stop.is_set()
