"""Follow, wait for and cancel a job that runs in a detached worker process.

Why a detached process (its own session) instead of a ``multiprocessing`` child: a run lasts hours and must outlive
the TUI that started it, an SSH drop (SIGHUP) and a crash of the parent. The worker appends every event to the
run's ``events.jsonl`` (flushed and synced per event); :meth:`JobHandle.events` replays that journal and then
follows it, which is the same code path for the parent that started the job, a TUI attached hours later on another
terminal, and the headless CLI. Nothing the user sees exists only in memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from heretic_tui.core.errors import EXIT_CODES
from heretic_tui.core.runs.events import Event, JobError
from heretic_tui.core.runs.journal import read_new_events, tail_lines
from heretic_tui.core.runs.run_directory import RunDirectory

class JobHandle:
    """A view on one job: follow its events, wait for it, cancel it. Works for jobs started by anyone.

    ``process`` is the supervisor this process started, if it did; liveness follows the worker itself too (the pid
    and start time in worker.json), so a supervisor that is killed does not end a job whose worker still runs.
    """

    def __init__(self, run: RunDirectory, process: subprocess.Popen[bytes] | None = None, start_offset: int = 0) -> None:
        self.run = run
        self.process = process
        self.start_offset = start_offset

    def supervisor_alive(self) -> bool:
        """True while the supervisor this process started still runs (False when it started none)."""
        return self.process is not None and self.process.poll() is None

    def alive(self) -> bool:
        return self.supervisor_alive() or self.run.worker_alive()

    def exit_code(self) -> int | None:
        """The worker's exit code as recorded in worker.json (negative: killed by that signal); None if nobody did.

        A supervisor this process started that exited normally without a record (it could not write worker.json,
        or failed before starting the worker) exits with the worker's code, so that counts too; a supervisor killed
        by a signal says nothing about how its worker ended.
        """
        recorded = self.run.read_worker().get("exit_code")
        if isinstance(recorded, int) and not isinstance(recorded, bool):
            return recorded
        if self.process is not None and self.process.poll() is not None and self.process.returncode >= 0:
            return self.process.returncode
        return None

    def _death_event(self) -> JobError:
        code = self.exit_code()
        tail = tail_lines(self.run.log_path, 15)
        worker = self.run.read_worker()
        pid = self.run.worker_pid()
        who = f"The worker process{f' (pid {pid})' if pid else ''}"
        if code is None:
            supervisor = ""
            if self.process is not None and self.process.poll() is not None and self.process.returncode < 0:
                supervisor = f"; its supervisor (pid {self.process.pid}) was killed by {_signal_name(-self.process.returncode)}"
            message = (f"{who} is gone and nobody recorded how it ended{supervisor}, so its exit code is unknown "
                       "(it may have been killed together with its supervisor, or the machine restarted). ")
        else:
            if code < 0:
                described = f"exit code {code}: killed by {_signal_name(-code)}"
                if -code == signal.SIGKILL:
                    described += " (kill -9, or the kernel's out-of-memory killer)"
            else:
                described = f"exit code {code}"
                meaning = next((item.meaning for item in EXIT_CODES if item.code == code and code != 0), None)
                if meaning:
                    described += f" ({meaning})"
            message = f"{who} stopped with {described} before its journal recorded the end of the job. "
            said = worker.get("error") if isinstance(worker.get("error"), str) else None
            said = said or next((line.removeprefix("error: ") for line in reversed(tail)
                                 if line.startswith("error: ")), None)
            if said:
                message += f"It said: {said} "
        message += f"The run is kept in {self.run.path}; resume it, or read worker.log for the cause."
        return JobError(message=message, traceback="\n".join(tail),
                        exit_code=code if code is not None and code > 0 else None)

    def events(self, follow: bool = True, poll_seconds: float = 0.1,
               stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Replay the journal (from ``start_offset``), then follow it until the job ends or the worker dies.

        A resumed run's journal holds several sessions; a terminal event only ends the stream when nothing follows
        it and the worker is gone. A dead worker without a terminal event yields a synthesized error, so no caller
        waits forever; ``stop`` lets a viewer that is closing (a TUI screen) end the stream without waiting.
        """
        offset = self.start_offset
        grace_until = time.time() + 20.0
        last_terminal = False
        while True:
            events, offset = read_new_events(self.run.events_path, offset)
            for item in events:
                yield item
                last_terminal = item.terminal
            if not follow or (last_terminal and not self.alive()):
                return
            if events:
                continue
            if stop is not None and stop():
                return
            started = self.run.worker_path.exists() or self.process is not None
            if not self.alive() and (started or time.time() > grace_until):
                events, offset = read_new_events(self.run.events_path, offset)
                for item in events:
                    yield item
                    last_terminal = item.terminal
                if not last_terminal:
                    yield self._death_event()
                return
            time.sleep(poll_seconds)

    def _worker_pid(self) -> int | None:
        """The worker's pid, or while it has not written worker.json yet, the supervisor's (which forwards)."""
        if self.run.worker_alive():
            return self.run.worker_pid()
        return self.process.pid if self.supervisor_alive() and self.process is not None else None

    def request_cancel(self) -> bool:
        """Ask the worker to stop gracefully (abandon the trial in flight, persist, report). False if not running."""
        pid = self._worker_pid()
        if not pid or not self.alive():
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """Stop the worker at once (after a graceful cancel did not finish in time); its supervisor records it.

        Before the worker has written worker.json its pid is not known yet, so the supervisor's whole process group
        (the supervisor and the worker it forked) is killed instead.
        """
        try:
            if self.run.worker_alive() and (pid := self.run.worker_pid()):
                os.kill(pid, signal.SIGKILL)
            elif self.supervisor_alive() and self.process is not None:
                os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def cancel(self, grace_seconds: float = 60.0) -> None:
        """Graceful cancel, then a hard kill if the worker has not exited within ``grace_seconds``."""
        if not self.request_cancel():
            return
        deadline = time.time() + grace_seconds
        while time.time() < deadline:
            if not self.alive():
                return
            time.sleep(0.1)
        self.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.time() + timeout
        while self.alive():
            if deadline is not None and time.time() > deadline:
                return None
            time.sleep(0.1)
        return self.exit_code()


def _signal_name(number: int) -> str:
    return signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"


def attach(path: str | Path) -> JobHandle:
    """A handle on an existing run (live or finished), for replaying and following its journal."""
    return JobHandle(RunDirectory.open(path))
