"""One job's run folder: its files, what a reader can learn from them, and where run folders live.

Everything the TUI shows about a job can be rebuilt from its folder; the registry indexes these folders, it never
replaces them. Layout::

    job.json       kind, arguments, creation time (written by the parent before the worker starts)
    config.toml    the resolved settings of this run
    worker.json    worker pid, its process start time, and its exit code once it exits
    events.jsonl   the append-only event journal
    worker.log     everything the worker (and tqdm, and native libraries) printed
    report.json    the machine-readable result, written atomically at the end
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import platformdirs
import psutil

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import Event
from heretic_tui.core.runs.journal import read_new_events
from heretic_tui.core.settings import APP_NAME, Settings

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


def list_runs(root: Path) -> list[RunDirectory]:
    """Every run folder under root, newest first; folders that are not runs are ignored."""
    if not root.is_dir():
        return []
    runs = [RunDirectory(child.resolve()) for child in root.iterdir() if (child / JOB_FILE).is_file()]
    return sorted(runs, key=lambda run: run.job_path.stat().st_mtime, reverse=True)
