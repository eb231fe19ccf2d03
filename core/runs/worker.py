"""The worker process: runs one job of a run directory and writes its event journal.

Started by :func:`heretic_tui.core.runs.lifecycle.start_job` as ``python -m heretic_tui.core.runs.worker RUN_DIR`` in its own session, with stdout and
stderr already pointing at ``worker.log``. SIGHUP is ignored (an SSH drop must not end a run); SIGTERM and SIGINT
ask for a graceful cancel, which pipelines honour at their next :meth:`JobContext.check_cancelled`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from heretic_tui.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    HereticError,
    JobCancelled,
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
from heretic_tui.core.runs.job_kinds import job_kind
from heretic_tui.core.atomic_files import write_json_atomically
from heretic_tui.core.runs.run_directory import RunDirectory
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
        self._journal = open(run.events_path, "a", encoding="utf-8")
        self._last_progress = 0.0

    def emit(self, item: Event) -> None:
        """Append one event to the journal, flushed and synced so a kill -9 right after loses nothing."""
        self._journal.write(item.to_json() + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

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
        self._journal.close()


def read_secret() -> str | None:
    """One line the starter piped in (see ``start_job(secret=...)``); empty standard input means none."""
    try:
        line = sys.stdin.readline().rstrip("\n")
        sys.stdin.close()
    except (OSError, ValueError):
        return None
    return line or None


def run_worker(run_path: Path) -> int:
    run = RunDirectory(run_path)
    me = psutil.Process()
    write_json_atomically(run.worker_path, {"pid": os.getpid(), "create_time": me.create_time(), "started": time.time()})
    job = run.read_job()
    arguments = job.get("arguments", {})
    settings = load_settings(run.config_path, environ={}, search_default_paths=False)
    context = JobContext(run, settings, arguments, read_secret())

    def request_cancel(signum: int, frame: Any) -> None:
        if context.cancel_requested:
            return
        context.cancel_requested = True
        print(f"cancel requested (signal {signum}); stopping at the next safe point", flush=True)

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, request_cancel)
    signal.signal(signal.SIGINT, request_cancel)

    context.emit(
        JobStarted(
            job=job.get("kind", ""),
            run_dir=str(run.path),
            model=settings.model.model,
            pid=os.getpid(),
            resumed=bool(arguments.get("resume")),
        )
    )
    exit_code = EXIT_OK
    try:
        runner = job_kind(str(job.get("kind", ""))).run_function()
        summary = runner(context)
        context.emit(JobFinished(report=str(run.report_path), summary=summary or {}))
    except JobCancelled:
        exit_code = EXIT_CANCELLED
        context.emit(JobCancelledEvent(reason="cancelled by the user; completed work is saved and the run can be resumed"))
    except HereticError as error:
        exit_code = error.exit_code
        print(f"error: {error}", flush=True)
        context.emit(JobError(message=str(error), user_error=isinstance(error, UserInputError), exit_code=exit_code))
    except BaseException as error:
        exit_code = EXIT_FAILED
        text = traceback.format_exc()
        print(text, flush=True)
        message = str(error) or type(error).__name__
        if isinstance(error, MemoryError) or "out of memory" in message.lower():
            message += " (out of memory: lower model.max_batch_size or set model.batch_size, or use a smaller dtype)"
        context.emit(JobError(message=f"{type(error).__name__}: {message}", traceback=text, exit_code=exit_code))
    finally:
        context.close()
        record_in_registry(run)
        info = run.read_worker()
        info["exit_code"] = exit_code
        info["finished"] = time.time()
        write_json_atomically(run.worker_path, info)
    return exit_code


def record_in_registry(run: RunDirectory) -> None:
    """Index the run now that its job ended, before worker.json says so, so whoever waited for the job finds it.

    It runs after the terminal event, so the journal is not touched again: a registry failure is printed to
    worker.log only and never changes the job's outcome.
    """
    from heretic_tui.core.runs.registry import record_finished_run

    record_finished_run(run.path, warn=lambda message: print(f"warning: {message}", flush=True))


def supervise(run: RunDirectory, child: int) -> int:
    """Wait for the worker and record how it ended, so anyone attached later learns its exit code.

    The supervisor is forked before anything heavy is imported and does nothing but wait: a worker killed by the
    kernel (out of memory) or by kill -9 still gets ``exit_code`` (the negative signal number) in worker.json.
    """
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
    info = run.read_worker()
    if "exit_code" not in info:
        info.update(pid=info.get("pid", child), exit_code=code, finished=time.time())
        write_json_atomically(run.worker_path, info)
        print(f"worker process {child} ended with exit code {code} before finishing its job", flush=True)
    return code if code >= 0 else 128 - code


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m heretic_tui.core.runs.worker RUN_DIR", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    run = RunDirectory(Path(sys.argv[1]))
    child = os.fork()
    if child == 0:
        code = run_worker(run.path)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(supervise(run, child))


if __name__ == "__main__":
    main()
