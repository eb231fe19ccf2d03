"""Following a job's journal from a Textual thread worker, one message per event: the one follower every screen
that watches a job uses (the dashboards, the export in trial actions, the comparison, the upload).

The thread only reads the journal (through the core's ``JobHandle.events``) and posts messages to its screen;
widgets are touched only by the screen that receives them. ``events()`` waits inside the generator while the worker
is quiet, so a follower that could not be stopped would block the app's exit for as long as the run lasts: it is
stopped when its screen unmounts, which ends the generator within one poll. A screen that follows a new job (a
resumed run, a second export) gets a new generation, and the messages of the previous one are recognised as stale.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

from textual.message import Message
from textual.widget import Widget

from heretic_tui.core.api import JobHandle
from heretic_tui.core.runs.events import Event

POLL_SECONDS = 0.1


class JobEventMessage(Message):
    """One event of the run at ``run_path``, in journal order; ``generation`` tells a restarted follower's apart.

    ``replayed`` is True for the events that were in the journal when following began (history, not news): a
    screen announces an ending only when it happens while it watches.
    """

    def __init__(self, run_path: Path, event: Event, generation: int = 0, replayed: bool = False) -> None:
        super().__init__()
        self.run_path = run_path
        self.event = event
        self.generation = generation
        self.replayed = replayed


class JobFollowEnded(Message):
    """The follower reached the end of the run (terminal event or dead worker) or was stopped."""

    def __init__(self, run_path: Path, stopped: bool, generation: int = 0) -> None:
        super().__init__()
        self.run_path = run_path
        self.stopped = stopped
        self.generation = generation


class JobFollower:
    """Follows one job at a time on behalf of ``owner`` (a screen), which receives the messages above.

    Every follow replays the whole journal (every attempt of a resumed run), then follows it: even for the handle
    of a just-resumed job, whose own offset points at the new attempt, because a dashboard shows the trials of
    every attempt.
    """

    def __init__(self, owner: Widget, group: str = "follow") -> None:
        self.owner = owner
        self.group = group
        self.handle: JobHandle | None = None
        self.generation = 0
        self._stop = threading.Event()

    def follow(self, handle: JobHandle) -> None:
        """Stop following the previous job (if any) and follow ``handle``'s job from its first event."""
        self.stop()
        self._stop = threading.Event()
        self.generation += 1
        self.handle = handle
        replay = JobHandle(handle.run, handle.process)
        self.owner.run_worker(partial(self._run, replay, self._stop, self.generation), thread=True,
                              group=self.group, exclusive=True, exit_on_error=False)

    def _run(self, handle: JobHandle, stop: threading.Event, generation: int) -> None:
        path = handle.run.path
        history = len(handle.run.read_events())
        events = handle.events(follow=True, poll_seconds=POLL_SECONDS, stop=stop.is_set)
        for index, item in enumerate(events):
            if stop.is_set():
                break
            self.owner.post_message(JobEventMessage(path, item, generation, replayed=index < history))
        self.owner.post_message(JobFollowEnded(path, stopped=stop.is_set(), generation=generation))

    def stop(self) -> None:
        """Stop following; the thread ends within one poll and the job itself is never touched."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def is_current(self, message: JobEventMessage | JobFollowEnded) -> bool:
        """Whether a message comes from the job followed now (not from one followed before a restart)."""
        return message.generation == self.generation
