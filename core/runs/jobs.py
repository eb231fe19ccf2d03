"""Start, follow and cancel jobs that run in a detached worker process, one run directory per job.

Why a detached process (its own session) instead of a ``multiprocessing`` child: a run lasts hours and must outlive
the TUI that started it, an SSH drop (SIGHUP) and a crash of the parent. The worker appends every event to the
run's ``events.jsonl`` (flushed and synced per event); :meth:`JobHandle.events` replays that journal and then
follows it, which is the same code path for the parent that started the job, a TUI attached hours later on another
terminal, and the headless CLI. Nothing the user sees exists only in memory.

Run directory layout::

    job.json       kind, arguments, creation time (written by the parent before the worker starts)
    config.toml    the resolved settings of this run
    worker.json    worker pid, its process start time, and its exit code once it exits
    events.jsonl   the append-only event journal
    worker.log     everything the worker (and tqdm, and native libraries) printed
    report.json    the machine-readable result, written atomically at the end
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import platformdirs
import psutil

from heretic_tui.core.atomic_files import read_json_object, write_json_atomically
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import Event, JobError
from heretic_tui.core.runs.journal import read_new_events, tail_lines
from heretic_tui.core.settings import APP_NAME, Settings, render_config

JOB_FILE = "job.json"
CONFIG_FILE = "config.toml"
WORKER_FILE = "worker.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "worker.log"
REPORT_FILE = "report.json"

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"


def runs_root(settings: Settings) -> Path:
    """The folder holding one sub-folder per run."""
    if settings.output.runs_directory:
        return Path(settings.output.runs_directory).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "runs"


def slugify(text: str) -> str:
    tail = text.rstrip("/").split("/")[-1] or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-").lower()[:60] or "model"


@dataclass(frozen=True)
class RunDirectory:
    """One job's folder; everything the TUI shows about a job can be rebuilt from it."""

    path: Path

    @property
    def job_path(self) -> Path:
        return self.path / JOB_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def worker_path(self) -> Path:
        return self.path / WORKER_FILE

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    @classmethod
    def create(cls, root: Path, model: str, *, exact: Path | None = None) -> RunDirectory:
        """Make a new run folder (``<yyyymmdd-hhmmss>-<model-slug>`` under root, or exactly ``exact``)."""
        if exact is not None:
            path = Path(exact).expanduser()
            if path.exists() and any(path.iterdir()):
                raise UserInputError(
                    f"Run directory {path} already exists and is not empty. Pass --resume to continue that run, "
                    "or choose a new --run-dir."
                )
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = root / f"{stamp}-{slugify(model)}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = root / f"{stamp}-{slugify(model)}-{suffix}"
        path.mkdir(parents=True, exist_ok=True)
        return cls(path.resolve())

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """Open an existing run folder; a folder that is not a run is a clear user error."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise UserInputError(f"Run directory {path} does not exist. Pass the folder of a run (it holds job.json).")
        if not (path / JOB_FILE).is_file():
            raise UserInputError(
                f"{path} is not a heretic-tui run: it has no {JOB_FILE}. Pass a folder created by a run "
                "(see the runs list in the TUI, or the path printed when the run started)."
            )
        return cls(path.resolve())

    def read_job(self) -> dict[str, Any]:
        return json.loads(self.job_path.read_text(encoding="utf-8"))

    def read_worker(self) -> dict[str, Any]:
        try:
            return json.loads(self.worker_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def read_report(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.report_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def read_events(self) -> list[Event]:
        events, _ = read_new_events(self.events_path, 0)
        return events

    def worker_alive(self) -> bool:
        """True while the worker process recorded in worker.json still runs (pid reuse is ruled out)."""
        info = self.read_worker()
        pid = info.get("pid")
        if not pid or "exit_code" in info:
            return False
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - info.get("create_time", 0.0)) > 1.0:
                return False
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def status(self) -> str:
        """running, finished, failed or cancelled, derived from the journal and the worker's liveness."""
        events = self.read_events()
        for item in reversed(events):
            if item.terminal:
                return {"job_finished": STATUS_FINISHED, "job_cancelled": STATUS_CANCELLED}.get(
                    item.kind, STATUS_FAILED
                )
            if item.kind == "job_started":
                break
        if self.worker_alive():
            return STATUS_RUNNING
        if not self.worker_path.exists() and time.time() - self.job_path.stat().st_mtime < 30:
            return STATUS_RUNNING
        return STATUS_FAILED


class JobHandle:
    """A view on one job: follow its events, wait for it, cancel it. Works for jobs started by anyone."""

    def __init__(self, run: RunDirectory, process: subprocess.Popen[bytes] | None = None, start_offset: int = 0) -> None:
        self.run = run
        self.process = process
        self.start_offset = start_offset

    def alive(self) -> bool:
        if self.process is not None:
            if self.process.poll() is not None:
                return False
            return True
        return self.run.worker_alive()

    def exit_code(self) -> int | None:
        """The worker's exit code as its supervisor recorded it (negative: killed by that signal)."""
        recorded = self.run.read_worker().get("exit_code")
        if recorded is not None:
            return int(recorded)
        return self.process.poll() if self.process is not None else None

    def _death_event(self) -> JobError:
        code = self.exit_code()
        if code is None:
            described = "an unknown exit code (it was killed or crashed)"
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            described = f"exit code {code}: killed by {name}"
            if -code == signal.SIGKILL:
                described += " (kill -9, or the kernel's out-of-memory killer)"
        else:
            described = f"exit code {code}"
        tail = tail_lines(self.run.log_path, 15)
        message = (
            f"The worker process stopped with {described} before the job ended. The run is kept in {self.run.path}; "
            "resume it, or read worker.log for the cause."
        )
        return JobError(message=message, traceback="\n".join(tail))

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
        return self.run.read_worker().get("pid") or (self.process.pid if self.process is not None else None)

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
        """Stop the worker at once (after a graceful cancel did not finish in time); its supervisor records it."""
        pid = self._worker_pid()
        if pid and self.alive():
            try:
                os.kill(pid, signal.SIGKILL)
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


def worker_environment() -> dict[str, str]:
    """The worker's environment: unbuffered, no progress bars drawing control codes into the log."""
    environment = dict(os.environ)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.setdefault("TQDM_DISABLE", "1")
    environment.setdefault("TOKENIZERS_PARALLELISM", "false")
    environment.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return environment


def start_job(
    kind: str,
    settings: Settings,
    run: RunDirectory,
    arguments: dict[str, Any] | None = None,
) -> JobHandle:
    """Write the run's job.json and config.toml, then launch the detached worker process."""
    if not run.job_path.exists() or not arguments or not arguments.get("resume"):
        write_json_atomically(
            run.job_path,
            {"kind": kind, "arguments": arguments or {}, "created": time.time(), "model": settings.model.model},
        )
    else:
        job = run.read_job()
        job["arguments"] = {**job.get("arguments", {}), **(arguments or {})}
        write_json_atomically(run.job_path, job)
    temporary = run.config_path.with_name(f".{CONFIG_FILE}.tmp")
    temporary.write_text(render_config(settings), encoding="utf-8")
    os.replace(temporary, run.config_path)
    if run.worker_path.exists():
        run.worker_path.unlink()
    start_offset = run.events_path.stat().st_size if run.events_path.exists() else 0
    log = open(run.log_path, "ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "heretic_tui.core.runs.worker", str(run.path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=worker_environment(),
            cwd=os.getcwd(),
        )
    finally:
        log.close()
    return JobHandle(run, process, start_offset)


def prepare_run(
    kind: str,
    settings: Settings,
    run_dir: Path | None,
    resume: bool,
    preflight: Callable[[Settings], None],
    description: str,
) -> RunDirectory:
    """The run folder a new or resumed job of ``kind`` goes into, after the checks that keep bad input out.

    A new run is preflighted before its folder exists, so bad input leaves nothing behind; a resumed run must be
    a stopped run of the same kind (a live one is attached to, not started twice).
    """
    if not resume:
        preflight(settings)
        return RunDirectory.create(runs_root(settings), settings.model.model, exact=run_dir)
    if run_dir is None:
        raise UserInputError(f"--resume needs --run-dir pointing at the {description} run to continue.")
    run = RunDirectory.open(run_dir)
    found = run.read_job().get("kind")
    if found != kind:
        raise UserInputError(f"{run.path} is a '{found}' run, not {description} run, so it cannot be resumed here.")
    if run.worker_alive():
        raise UserInputError(f"The run {run.path} is still running (worker pid {run.read_worker().get('pid')}). "
                             "Attach to it instead of resuming it.")
    return run


def attach(path: str | Path) -> JobHandle:
    """A handle on an existing run (live or finished), for replaying and following its journal."""
    return JobHandle(RunDirectory.open(path))


def delete_run(run: RunDirectory) -> None:
    """Remove a stopped run's folder and its registry entries; a running one must be cancelled first."""
    if run.worker_alive():
        raise UserInputError(f"The run {run.path} is still running; cancel it before deleting it.")
    shutil.rmtree(run.path)
    try:
        from heretic_tui.core.runs.registry import Registry

        Registry().forget_missing()
    except Exception as error:
        print(f"warning: the registry could not forget {run.path}: {error}", file=sys.stderr)


def list_runs(root: Path) -> list[RunDirectory]:
    """Every run folder under root, newest first; folders that are not runs are ignored."""
    if not root.is_dir():
        return []
    runs = [RunDirectory(child.resolve()) for child in root.iterdir() if (child / JOB_FILE).is_file()]
    return sorted(runs, key=lambda run: run.job_path.stat().st_mtime, reverse=True)
