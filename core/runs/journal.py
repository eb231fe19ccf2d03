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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from heretic_tui.core.atomic_files import storage_errors
from heretic_tui.core.runs.events import Event, decode_event

CUT_SUFFIX = ".cut"
_TAIL_WINDOW = 1 << 20


def complete_length(path: Path) -> int:
    """The size of ``path`` up to and including its last newline: where the next whole record would start."""
    try:
        with open(path, "rb") as handle:
            return _complete_length(handle, os.fstat(handle.fileno()).st_size)
    except FileNotFoundError:
        return 0


def _complete_length(handle: BinaryIO, size: int) -> int:
    position = size
    while position > 0:
        start = max(0, position - _TAIL_WINDOW)
        handle.seek(start)
        window = handle.read(position - start)
        newline = window.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


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
            keep = _complete_length(handle, size)
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


@dataclass(frozen=True)
class JournalContents:
    """Every event of a journal, and the first line that was damaged (None when every line was whole)."""

    events: list[Event]
    damage: str | None


def read_journal(path: Path) -> JournalContents:
    """Every event from the start, naming the first damaged line (not JSON, not an object, a field of a wrong type).

    Damaged lines are skipped or repaired exactly as :func:`read_new_events` does; a trailing partial line is not
    damage (a writer may be in the middle of it, and the next start cuts a torn one).
    """
    events: list[Event] = []
    damage: str | None = None
    for number, text in enumerate(_complete_lines(_read_from(path, 0))[0], start=1):
        if not text:
            continue
        try:
            decoded = decode_event(text)
        except ValueError as error:
            damage = damage or f"line {number} is not an event ({_short(error)})"
            continue
        events.append(decoded.event)
        if decoded.problems and damage is None:
            damage = f"line {number}: {decoded.problems[0]}"
    return JournalContents(events, damage)


def read_new_events(path: Path, offset: int) -> tuple[list[Event], int]:
    """Events appended after byte ``offset``; a trailing partial line is left for the next read.

    A complete line that is not a valid event (damaged by hand, or by another program) is skipped, and a field of
    the wrong type is coerced or left at its default, so one bad line never hides the rest of a run.
    """
    lines, consumed = _complete_lines(_read_from(path, offset))
    events: list[Event] = []
    for text in lines:
        if text:
            try:
                events.append(decode_event(text).event)
            except ValueError:
                continue
    return events, offset + consumed


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return b""


def _complete_lines(data: bytes) -> tuple[list[str], int]:
    """The whole lines in ``data`` (stripped text) and how many bytes they take; a partial last line is left."""
    end = data.rfind(b"\n") + 1
    lines = [line.decode("utf-8", errors="replace").strip() for line in data[:end].split(b"\n")[:-1]]
    return lines, end


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 80 else text[:77] + "..."


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
