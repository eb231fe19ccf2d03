"""The supervisor: the parent of a worker process, which waits for it and records how it ended.

It is forked before anything heavy is imported and does nothing but wait, so a worker killed by the kernel (out of
memory) or by kill -9 still gets its ``exit_code`` (the negative signal number) in worker.json. It holds the run's
lock too (see :mod:`heretic_tui.core.runs.run_lock`), so no new start can slip in between the worker's death and
the record of it. Followers watch the worker's own pid as well, so a supervisor that is killed does not end a
run that is still going.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from heretic_tui.core.errors import StorageError
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.runs.worker_file import record_end


def supervise(run: RunDirectory, child: int) -> int:
    """Wait for the worker ``child``; returns the exit status the supervisor itself should exit with."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def forward(signum: int, frame: Any) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    if run.read_worker().get("exit_code") is None:
        extra = {} if run.worker_pid() else {"pid": child}
        try:
            record_end(run, code, **extra)
        except StorageError as error:
            _say(f"error: {error}")
        _say(f"worker process {child} ended with exit code {code} before finishing its job")
    return code if code >= 0 else 128 - code


def _say(message: str) -> None:
    """A line in worker.log; a log that cannot be written (full disk) must not stop the supervisor."""
    try:
        print(message, flush=True)
    except OSError:
        pass
