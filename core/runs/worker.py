"""The worker process: runs one job of a run directory and writes its event journal.

Started by :func:`heretic_tui.core.runs.lifecycle.start_job` as
``python -m heretic_tui.core.runs.worker RUN_DIR --lock-fd N`` in its own session, with stdout and stderr already
pointing at ``worker.log`` and the run's lock handed over as descriptor N (see
:mod:`heretic_tui.core.runs.run_lock`). The process forks: the child runs the job, the parent is its
:mod:`~heretic_tui.core.runs.supervisor`. SIGHUP is ignored (an SSH drop must not end a run); SIGTERM and SIGINT
ask for a graceful cancel, which pipelines honour at their next :meth:`JobContext.check_cancelled`.

A job always ends with a recorded outcome: the terminal event in the journal and the exit code in worker.json. When
the journal itself cannot be written (a full disk, a read-only folder) the worker still ends cleanly: the reason
goes to worker.log and worker.json, which is written so that even a full disk takes it (see
:mod:`~heretic_tui.core.runs.worker_file`), and a follower reports it from there.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from heretic_tui.core.atomic_files import describe_storage_error, storage_errors
from heretic_tui.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STORAGE,
    HereticError,
    JobCancelled,
    StorageError,
    UserInputError,
)
from heretic_tui.core.runs.events import (
    Event,
    JobCancelled as JobCancelledEvent,
    JobError,
    JobFinished,
    JobStarted,
    JobWarning,
    LogLine,
    PhaseFinished,
    PhaseStarted,
    Progress,
)
from heretic_tui.core.runs.job_kinds import JobKind, job_kind
from heretic_tui.core.runs.journal import cut_partial_record
from heretic_tui.core.runs.registry import record_finished_run
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.runs.run_lock import RunLock
from heretic_tui.core.runs.supervisor import supervise
from heretic_tui.core.runs.worker_file import record_end, record_start
from heretic_tui.core.settings import Settings, load_settings


class JobContext:
    """What a pipeline gets: its settings and arguments, and the means to report and to notice a cancel."""

    def __init__(self, run: RunDirectory, settings: Settings, arguments: dict[str, Any],
                 secret: str | None = None) -> None:
        self.run = run
        self.settings = settings
        self.arguments = arguments
        self.secret = secret
        """What the starter piped to the worker's stdin (an upload token); never logged or written anywhere."""
        self.cancel_requested = False
        self.repaired_journal: tuple[int, Path | None] = cut_partial_record(run.events_path)
        """Bytes of a torn last record cut off the journal before appending, and the side file keeping them."""
        self.journal_error: StorageError | None = None
        """Set once appending to the journal failed; later events are not attempted."""
        with storage_errors(run.events_path, "open the event journal"):
            self._journal = os.open(run.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._last_progress = 0.0

    def emit(self, item: Event) -> None:
        """Append one event to the journal, synced so a kill -9 right after loses nothing.

        One line per event, and never a torn one: a write the disk could only take part of is cut back, so the
        journal stays readable and a later start appends after whole lines. A failed append raises StorageError.
        """
        if self.journal_error is not None:
            raise self.journal_error
        data = (item.to_json() + "\n").encode("utf-8")
        try:
            with storage_errors(self.run.events_path, "append to the event journal"):
                start = os.fstat(self._journal).st_size
                try:
                    written = 0
                    while written < len(data):
                        written += os.write(self._journal, data[written:])
                    os.fsync(self._journal)
                except OSError:
                    try:
                        os.ftruncate(self._journal, start)
                    except OSError:
                        pass
                    raise
        except StorageError as error:
            self.journal_error = error
            raise

    def log(self, message: str) -> None:
        print(message, flush=True)
        self.emit(LogLine(message=message))

    def warn(self, message: str) -> None:
        print(f"warning: {message}", flush=True)
        self.emit(JobWarning(message=message))

    def progress(self, phase: str, completed: int, total: int | None, force: bool = False) -> None:
        """Report progress, at most ten times a second unless forced (the last step always is)."""
        now = time.monotonic()
        if force or completed == total or now - self._last_progress > 0.1:
            self._last_progress = now
            self.emit(Progress(phase=phase, completed=completed, total=total))

    @contextmanager
    def phase(self, name: str, total: int | None = None, description: str = "") -> Iterator[Callable[[int], None]]:
        """Bracket a phase with started/finished events; yields a callback that reports progress."""
        started = time.perf_counter()
        self.emit(PhaseStarted(phase=name, total=total, description=description))
        print(f"phase {name}: {description}", flush=True)
        yield lambda completed: self.progress(name, completed, total)
        self.emit(PhaseFinished(phase=name, seconds=time.perf_counter() - started))

    def check_cancelled(self) -> None:
        if self.cancel_requested:
            raise JobCancelled()

    def close(self) -> None:
        if self._journal >= 0:
            os.close(self._journal)
            self._journal = -1


class _ForgivingStream:
    """worker.log as stdout/stderr: a log line the disk cannot take is dropped instead of failing the job."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def read_secret() -> str | None:
    """One line the starter piped in (see ``start_job(secret=...)``); empty standard input means none."""
    try:
        line = sys.stdin.readline().rstrip("\n")
        sys.stdin.close()
    except (OSError, ValueError):
        return None
    return line or None


def run_worker(run_path: Path) -> int:
    """Run the job of ``run_path`` in this process; returns its exit code (also recorded in worker.json)."""
    run = RunDirectory(run_path)
    sys.stdout = _ForgivingStream(sys.stdout)  # type: ignore[assignment]
    sys.stderr = _ForgivingStream(sys.stderr)  # type: ignore[assignment]
    try:
        record_start(run)
        job = run.read_job()
        kind = job_kind(str(job.get("kind", "")))
        arguments = job.get("arguments") if isinstance(job.get("arguments"), dict) else {}
        settings = load_settings(run.config_path, environ={}, search_default_paths=False)
        context = JobContext(run, settings, arguments, read_secret())
    except HereticError as error:
        print(f"error: {error}", flush=True)
        _record_end(run, error.exit_code, str(error))
        return error.exit_code

    def request_cancel(signum: int, frame: Any) -> None:
        if context.cancel_requested:
            return
        context.cancel_requested = True
        print(f"cancel requested (signal {signum}); stopping at the next safe point", flush=True)

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, request_cancel)
    signal.signal(signal.SIGINT, request_cancel)

    exit_code, reason = _run_job(context, kind)
    context.close()
    record_finished_run(run.path, warn=lambda message: print(f"warning: {message}", flush=True))
    _record_end(run, exit_code, reason)
    _notify(run, kind, exit_code, reason, settings)
    return exit_code


def _notify(run: RunDirectory, kind: JobKind, exit_code: int, reason: str | None, settings: Settings) -> None:
    """The user's notify command or URL (notify settings), after the outcome is recorded; never fatal."""
    if not (settings.notify.notify_command.strip() or settings.notify.notify_url.strip()):
        return
    from heretic_tui.core.operations.notify import RunEnd, notify_run_end, result_line

    try:
        end = RunEnd(run.path, kind.name, exit_code, result_line(run.path, exit_code, reason))
        notify_run_end(end, settings.notify, log=lambda message: print(message, flush=True))
    except Exception as error:
        print(f"warning: the notification failed: {type(error).__name__}: {error}", flush=True)


def _run_job(context: JobContext, kind: JobKind) -> tuple[int, str | None]:
    """Run the pipeline and journal its outcome; returns the exit code and the reason the journal could not hold."""
    run = context.run
    try:
        context.emit(JobStarted(job=kind.name, run_dir=str(run.path), model=context.settings.model.model,
                                pid=os.getpid(), resumed=bool(context.arguments.get("resume"))))
        cut, side = context.repaired_journal
        if cut:
            context.warn(f"the event journal ended in a torn record (a full disk or a power loss while it was "
                         f"written): cut {cut} bytes off {run.events_path.name} before appending; they are kept in "
                         f"{side}")
        summary = kind.run_function()(context)
        return _journal_end(context, EXIT_OK, JobFinished(report=str(run.report_path), summary=summary or {}), "")
    except JobCancelled:
        reason = "cancelled by the user; completed work is saved and the run can be resumed"
        return _journal_end(context, EXIT_CANCELLED, JobCancelledEvent(reason=reason), reason)
    except HereticError as error:
        print(f"error: {error}", flush=True)
        event = JobError(message=str(error), user_error=isinstance(error, UserInputError), exit_code=error.exit_code)
        return _journal_end(context, error.exit_code, event, str(error))
    except BaseException as error:
        storage = _storage_cause(error)
        if storage is not None:
            message = describe_storage_error(storage, storage.filename or run.path, "write")
            print(f"error: {message}\n{traceback.format_exc()}", flush=True)
            return _journal_end(context, EXIT_STORAGE, JobError(message=message, exit_code=EXIT_STORAGE), message)
        text = traceback.format_exc()
        print(text, flush=True)
        message = str(error) or type(error).__name__
        if isinstance(error, MemoryError) or "out of memory" in message.lower():
            message += " (out of memory: lower model.max_batch_size or set model.batch_size, or use a smaller dtype)"
        message = f"{type(error).__name__}: {message}"
        return _journal_end(context, EXIT_FAILED, JobError(message=message, traceback=text, exit_code=EXIT_FAILED),
                            message)


_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
"""Errors that can only mean the storage refused a write (a permission error may as well be a read)."""


def _storage_cause(error: BaseException) -> OSError | None:
    """A full disk or read-only folder behind an error a library raised (Optuna's journal, torch.save, ...)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OUT_OF_SPACE:
            return current
        current = current.__cause__ or current.__context__
    return None


def _journal_end(context: JobContext, exit_code: int, event: Event, reason: str) -> tuple[int, str | None]:
    """Write the terminal event; when the journal cannot take it, the outcome and its reason go to worker.json."""
    try:
        context.emit(event)
        return exit_code, None
    except StorageError as error:
        journal_failed = context.journal_error is not None and reason != str(context.journal_error)
        if exit_code == EXIT_OK or not reason:
            exit_code, reason = EXIT_STORAGE, str(error)
        elif journal_failed:
            reason = f"{reason} The event journal could not record this either: {error}"
        print(f"error: {reason}", flush=True)
        return exit_code, reason


def _record_end(run: RunDirectory, exit_code: int, reason: str | None) -> None:
    try:
        record_end(run, exit_code, reason)
    except StorageError as error:
        print(f"error: {error}", flush=True)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m heretic_tui.core.runs.worker",
                                     description="Run the job of a run folder (started by heretic-tui).")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--lock-fd", type=int, default=None,
                        help="descriptor of the run's lock, taken and handed over by the starter")
    return parser.parse_args(argv)


def main() -> None:
    arguments = _arguments(sys.argv[1:])
    run = RunDirectory(arguments.run_dir.expanduser().resolve())
    try:
        lock = RunLock.adopt(run, arguments.lock_fd) if arguments.lock_fd is not None else RunLock.acquire(run)
    except HereticError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(error.exit_code if error.exit_code else EXIT_BAD_INPUT)
    child = os.fork()
    if child == 0:
        lock.record_holder(os.getpid(), "worker")
        code = run_worker(run.path)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(supervise(run, child))


if __name__ == "__main__":
    main()
