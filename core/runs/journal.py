"""Append-only journals (``events.jsonl``, Optuna's ``study.journal``): reading them and repairing a torn tail.

A full disk or a power loss can leave a journal ending mid-record. Readers already stop at the last complete line;
a writer must not append after a partial one, or the torn record and the next one merge into a line nobody can
parse (Optuna then refuses the whole study). :func:`cut_partial_record` runs before anything appends: it moves the
trailing bytes after the last newline into a side file (kept, never deleted, so nothing is destroyed silently)
and reports how many it moved, for the caller to say so in the log.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from heretic_tui.core.atomic_files import storage_errors
from heretic_tui.core.runs.events import Event, event_from_json

CUT_SUFFIX = ".cut"
_TAIL_WINDOW = 1 << 20


def cut_partial_record(path: Path) -> tuple[int, Path | None]:
    """Cut a trailing partial record off ``path``; returns (bytes cut, side file holding them) or (0, None)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0, None
    if size == 0:
        return 0, None
    with storage_errors(path, "repair the journal"):
        with open(path, "rb+") as handle:
            keep = 0
            position = size
            while position > 0:
                start = max(0, position - _TAIL_WINDOW)
                handle.seek(start)
                window = handle.read(position - start)
                newline = window.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                position = start
            if keep == size:
                return 0, None
            handle.seek(keep)
            torn = handle.read()
            side = path.with_name(f"{path.name}{CUT_SUFFIX}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            with open(side, "wb") as kept:
                kept.write(torn)
                kept.flush()
                os.fsync(kept.fileno())
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return len(torn), side


def read_new_events(path: Path, offset: int) -> tuple[list[Event], int]:
    """Events appended after byte ``offset``; a trailing partial line is left for the next read.

    A complete line that is not a valid event (damaged by hand, or by another program) is skipped, so one bad line
    never hides the rest of a run.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    events: list[Event] = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        text = line.decode("utf-8", errors="replace").strip()
        if text:
            try:
                events.append(event_from_json(text))
            except (ValueError, TypeError, AttributeError):
                continue
    return events, offset + consumed


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` non-empty lines of a log (carriage returns of progress bars count as line ends)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = [line.rstrip() for line in data.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-count:]
