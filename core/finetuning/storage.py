"""A full disk or read-only folder while training writes its checkpoints, its adapter or its merged model.

The libraries that write those files do not all say "no space left" the same way: Python's own writes raise an
``OSError`` with ``ENOSPC``, safetensors raises its own ``SafetensorError`` with the OS error only in its text, and
torch's checkpoint writer raises a bare ``RuntimeError`` ("unexpected pos ...") that loses it altogether. So a
failed write counts as a storage failure when a storage errno is anywhere in its chain
(:func:`heretic_tui.core.atomic_files.storage_errno` reads both kinds), or when the folder's file system has less
space left than the write needed. Either way the user gets one :class:`StorageError` paragraph (exit code 3)
naming the folder, and the half-written output is removed so nothing that looks complete is left behind; the run
resumes from its last complete checkpoint once space is back.

Hand-written because no library classifies these errors; the paragraph itself comes from
:mod:`heretic_tui.core.atomic_files`, like every other storage error.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from heretic_tui.core.atomic_files import describe_storage_error, storage_errno
from heretic_tui.core.errors import HereticError, JobCancelled, StorageError

MEGABYTE = 1024**2
MINIMUM_HEADROOM = 16 * MEGABYTE
"""Below this much free space any failed write is taken for a full disk (a checkpoint's small files need more)."""


def free_bytes(folder: Path) -> int | None:
    """Free space on the file system that holds ``folder`` (or its nearest existing parent); None if unknown."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _storage_cause(error: BaseException) -> OSError | None:
    """The storage failure anywhere in ``error``'s chain, as an OSError with its errno (None if there is none)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        number = storage_errno(current)
        if number is not None:
            return current if isinstance(current, OSError) else OSError(number, os.strerror(number))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def storage_failures(folder: Path, action: str, needed_bytes: int,
                     clean_up: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn a write that failed for lack of space (or permission) under ``folder`` into a :class:`StorageError`.

    ``needed_bytes`` is about what the write needs; with less than that free (and at least
    :data:`MINIMUM_HEADROOM`), an error that lost its errno is still a full disk. ``clean_up`` removes what the
    failed write left half-written; it runs before the error is raised, so the space is free again at once.
    """
    try:
        yield
    except (HereticError, JobCancelled, KeyboardInterrupt):
        raise
    except Exception as error:
        cause = _storage_cause(error)
        if cause is None:
            free = free_bytes(folder)
            if free is None or free >= max(needed_bytes, MINIMUM_HEADROOM):
                raise
            cause = OSError(errno.ENOSPC, f"only {free // 1024} kB free")
        if clean_up is not None:
            clean_up()
        raise StorageError(describe_storage_error(cause, folder, action)) from error
