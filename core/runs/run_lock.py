"""One writer per run: an exclusive lock on the run folder, held by its worker (and supervisor) for their whole life.

The starter takes the lock before it writes job.json or config.toml or removes worker.json, hands the open lock
file to the worker process (``pass_fds``) and closes its own copy, so from the first write of a start to the exit
of the last process of the run there is no moment in which nobody holds it: two ``--resume`` started at the same
instant cannot both start. A second start finds the lock taken and gets a :class:`UserInputError` naming the live
worker's pid and the command that attaches to it.

Hand-written ``fcntl.flock`` rather than ``filelock``: the lock has to move from one process to another. An flock
belongs to the open file description, so it survives ``pass_fds`` and the fork of the supervisor, and the kernel
drops it when the last process holding that description exits (kill -9 and the out-of-memory killer included), so
a lock can never go stale. ``filelock`` has no way to hand its file to a child, and its release unlocks the
description (``LOCK_UN``), which would drop the worker's lock together with the starter's copy. Linux and macOS
only, as is the forked supervisor.

The lock file names its current holder (``starter PID``, then ``supervisor PID``, then ``worker PID``), so a start
that finds the run taken can name the worker even before the worker has written worker.json.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import time
from pathlib import Path

from heretic_tui.core.atomic_files import storage_errors
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.run_directory import RunDirectory

HOLDER_WAIT_SECONDS = 10.0
"""How long a refused start waits for the holder's worker to say its pid, so the message names the worker."""


def attach_command(run: RunDirectory) -> str:
    """The exact command that follows a run, for messages that send the user there."""
    return f"heretic-tui attach {shlex.quote(str(run.path))}"


class RunLock:
    """An open, exclusively locked ``RUN/.lock``; closing it (or exiting) gives the run up."""

    def __init__(self, run: RunDirectory, descriptor: int) -> None:
        self.run = run
        self.descriptor = descriptor

    @classmethod
    def acquire(cls, run: RunDirectory) -> RunLock:
        """Take the run's lock without waiting; a run another process holds is a :class:`UserInputError`."""
        with storage_errors(run.lock_path, "create the run's lock file"):
            descriptor = os.open(run.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserInputError(held_message(run)) from None
            raise
        lock = cls(run, descriptor)
        lock.record_holder(os.getpid(), "starter")
        return lock

    @classmethod
    def adopt(cls, run: RunDirectory, descriptor: int) -> RunLock:
        """The lock a starter handed over as an open descriptor; it must be this run's lock file, locked.

        Re-locking a description this process already holds is a no-op that cannot fail, so a descriptor that does
        not hold the lock (a worker started by hand with a wrong number) fails here instead of running unguarded.
        The descriptor is made non-inheritable so programs the job starts do not keep the run locked after it ends.
        """
        try:
            handed = os.fstat(descriptor)
            expected = os.stat(run.lock_path)
        except OSError as error:
            raise UserInputError(f"The lock handed to the worker of {run.path} is not open ({error}).") from None
        if (handed.st_dev, handed.st_ino) != (expected.st_dev, expected.st_ino):
            raise UserInputError(f"The lock handed to the worker of {run.path} is not that run's {run.lock_path.name}.")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserInputError(held_message(run)) from None
        os.set_inheritable(descriptor, False)
        lock = cls(run, descriptor)
        lock.record_holder(os.getpid(), "supervisor")
        return lock

    def record_holder(self, pid: int, role: str) -> None:
        """Name the holder in the lock file (best effort: a full disk only loses the hint)."""
        try:
            os.ftruncate(self.descriptor, 0)
            os.pwrite(self.descriptor, f"{role} {pid}\n".encode(), 0)
        except OSError:
            pass

    def close(self) -> None:
        """Close this process's copy without unlocking: a worker it was handed to keeps holding the lock."""
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1


def recorded_holder(path: Path) -> tuple[str, int] | None:
    """The role and pid the lock file names, if it names one."""
    try:
        role, pid = path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return (role, int(pid)) if pid.isdigit() else None


def _worker_named(run: RunDirectory) -> int | None:
    if run.worker_alive():
        return run.worker_pid()
    holder = recorded_holder(run.lock_path)
    return holder[1] if holder is not None and holder[0] == "worker" else None


def held_message(run: RunDirectory) -> str:
    """The paragraph for a start refused because the run is live: whose it is, and how to follow it instead.

    A run taken by a starter whose worker is not up yet is waited for a few seconds, so the message can name the
    worker rather than a process that is about to hand the run over.
    """
    deadline = time.monotonic() + HOLDER_WAIT_SECONDS
    while (pid := _worker_named(run)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid is None and (holder := recorded_holder(run.lock_path)) is not None:
        described = f"{holder[0]} pid {holder[1]}"
    else:
        described = f"worker pid {pid}" if pid else "a worker that is starting"
    return (
        f"The run {run.path} is still running ({described}): only one worker may write a run, so it was not started "
        f"again. Follow it with `{attach_command(run)}`, or cancel it before starting it again."
    )
