"""worker.json: who runs a job (pid and process start time) and, once it ended, how (exit code, reason).

Written by the worker when it starts and when it ends, and by its supervisor when the worker died before it could
say. The end must be recorded even on a full disk, where the usual atomic write (a new temporary file) has no room:
the start record is therefore padded to :data:`RESERVED_BYTES`, and an end that cannot be written atomically
overwrites that reserved space in place with one write, which needs no new block. JSON allows the trailing spaces,
so readers see an ordinary object either way.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import psutil

from heretic_tui.core.atomic_files import write_json_atomically, write_text_atomically
from heretic_tui.core.errors import StorageError
from heretic_tui.core.runs.run_directory import RunDirectory

RESERVED_BYTES = 4096
_REASON_LIMIT = 2000


def record_start(run: RunDirectory) -> None:
    """The running worker's pid and start time, padded so its end can be written on a full disk."""
    text = json.dumps({"pid": os.getpid(), "create_time": psutil.Process().create_time(), "started": time.time()})
    write_text_atomically(run.worker_path, text.ljust(RESERVED_BYTES - 1) + "\n")


def record_end(run: RunDirectory, exit_code: int, reason: str | None = None, **extra: Any) -> None:
    """Add the exit code (and the reason, for an error the journal may not hold) to worker.json.

    Raises StorageError only when neither the atomic write nor the in-place one could be made.
    """
    info = run.read_worker()
    info.update(extra, exit_code=exit_code, finished=time.time())
    if reason:
        info["error"] = reason if len(reason) <= _REASON_LIMIT else reason[: _REASON_LIMIT - 3] + "..."
    try:
        write_json_atomically(run.worker_path, info)
    except StorageError:
        _overwrite_in_place(run, info)


def _overwrite_in_place(run: RunDirectory, info: dict[str, Any]) -> None:
    try:
        with open(run.worker_path, "r+b") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = json.dumps(info, default=str).encode("utf-8")
            while len(data) + 1 > size and len(info.get("error") or "") > 40:
                info["error"] = info["error"][: len(info["error"]) // 2] + "..."
                data = json.dumps(info, default=str).encode("utf-8")
            if len(data) + 1 > size:
                raise StorageError(
                    f"Could not record how the worker of {run.path} ended: the disk is full and {run.worker_path} "
                    "has no room reserved for it."
                )
            os.pwrite(handle.fileno(), data + b" " * (size - len(data) - 1) + b"\n", 0)
            os.fsync(handle.fileno())
    except OSError as error:
        raise StorageError(f"Could not record how the worker of {run.path} ended in {run.worker_path}: "
                           f"{error.strerror or error}.") from error
