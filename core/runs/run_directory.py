"""One job's run folder: its files, what a reader can learn from them, and where run folders live.

Everything the TUI shows about a job can be rebuilt from its folder; the registry indexes these folders, it never
replaces them. Layout::

    job.json                kind, arguments, creation time (written by the starter before the worker starts)
    config.toml             the resolved settings of this run
    worker.json             worker pid, its process start time, and its exit code once it exits
    events.jsonl            the append-only event journal
    worker.log              everything the worker (and tqdm, and native libraries) printed
    report.json             the machine-readable result, written atomically at the end
    state.json              what a resumable job needs to continue (its own format, per kind)
    directions.safetensors  an abliteration's refusal directions, cached for resume and export
    .lock                   held (flock) by the one worker of the run for its whole life, see run_lock

A reader never trusts these files blindly: a file damaged by hand, by another program or by a disk fault makes
:meth:`RunDirectory.status` say ``damaged`` and :meth:`RunDirectory.damage` name the file, while every other run
keeps listing, attaching and exporting.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import platformdirs
import psutil

from heretic_tui.core.atomic_files import read_json_object, remove_leftovers, storage_errors
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import Event, JobCancelled, JobFinished
from heretic_tui.core.runs.job_kinds import JOB_KINDS
from heretic_tui.core.runs.journal import JournalContents, read_journal
from heretic_tui.core.settings import APP_NAME, Settings

JOB_FILE = "job.json"
CONFIG_FILE = "config.toml"
WORKER_FILE = "worker.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "worker.log"
REPORT_FILE = "report.json"
STATE_FILE = "state.json"
DIRECTIONS_FILE = "directions.safetensors"
LOCK_FILE = ".lock"

STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"
STATUS_DAMAGED = "damaged"

STARTING_GRACE_SECONDS = 30.0
"""How long a run whose worker has not written worker.json yet counts as starting rather than failed."""


def runs_root(settings: Settings) -> Path:
    """The folder holding one sub-folder per run."""
    if settings.output.runs_directory:
        return Path(settings.output.runs_directory).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "runs"


def slugify(text: str) -> str:
    tail = text.rstrip("/").split("/")[-1] or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-").lower()[:60] or "model"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_raw(path: Path) -> tuple[Any, str | None]:
    """The JSON in ``path`` and what is wrong with the file (None when it parsed, or is absent: then ``None``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except OSError as error:
        return None, f"it cannot be read: {error.strerror or error}"
    try:
        return json.loads(text), None
    except ValueError as error:
        return None, f"it is not valid JSON: {error}"


def _object_problem(data: Any, fields: dict[str, Any]) -> str | None:
    """What is wrong with a JSON value that should be an object whose ``fields`` pass their checks."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    for name, (check, wanted) in fields.items():
        if name in data and not check(data[name]):
            return f"its {name!r} is {json.dumps(data[name], default=str)[:40]}, not {wanted}"
    return None


_JOB_FIELDS = {
    "kind": (lambda value: isinstance(value, str), "a job kind"),
    "arguments": (lambda value: isinstance(value, dict), "an object"),
    "created": (lambda value: _is_number(value) or isinstance(value, str), "a time"),
    "model": (lambda value: isinstance(value, str), "text"),
}
_WORKER_FIELDS = {
    "pid": (lambda value: _is_whole(value) and value >= 0, "a process id"),
    "create_time": (_is_number, "a time"),
    "started": (_is_number, "a time"),
    "finished": (_is_number, "a time"),
    "exit_code": (lambda value: value is None or _is_whole(value), "an exit code"),
    "error": (lambda value: isinstance(value, str), "text"),
}


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

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @classmethod
    def create(cls, root: Path, model: str, *, exact: Path | None = None) -> RunDirectory:
        """Make a new run folder (``<yyyymmdd-hhmmss>-<model-slug>`` under root, or exactly ``exact``).

        An ``exact`` folder may exist if it holds nothing of a run: temporaries of a start that was killed or ran
        out of space are removed first, and an unheld lock file left by such a start does not count.
        """
        if exact is not None:
            path = Path(exact).expanduser()
            if path.exists() and not path.is_dir():
                raise UserInputError(f"Run directory {path} is a file, not a folder. Choose a folder for --run-dir.")
            if path.is_dir():
                remove_leftovers(path)
                if any(child.name != LOCK_FILE for child in path.iterdir()):
                    raise UserInputError(
                        f"Run directory {path} already exists and is not empty. Pass --resume to continue that "
                        "run, or choose a new --run-dir."
                    )
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = root / f"{stamp}-{slugify(model)}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = root / f"{stamp}-{slugify(model)}-{suffix}"
        with storage_errors(path, "create the run folder"):
            path.mkdir(parents=True, exist_ok=True)
        return cls(path.resolve())

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """Open an existing run folder; a folder that is not a run is a clear user error."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise UserInputError(f"Run directory {path} does not exist. Pass the folder of a run (it holds job.json).")
        if not (path / JOB_FILE).is_file():
            remove_leftovers(path)
            if path.is_dir() and all(child.name == LOCK_FILE for child in path.iterdir()):
                raise UserInputError(
                    f"{path} holds no run yet: its start stopped before {JOB_FILE} was written (a full disk or a "
                    "kill), so there is nothing to resume. Start it again without --resume, with the same --run-dir."
                )
            raise UserInputError(
                f"{path} is not a heretic-tui run: it has no {JOB_FILE}. Pass a folder created by a run "
                "(see the runs list in the TUI, or the path printed when the run started)."
            )
        return cls(path.resolve())

    def read_job(self) -> dict[str, Any]:
        """job.json as an object; empty when it is missing or damaged (:meth:`damage` says which)."""
        return read_json_object(self.job_path)

    def read_worker(self) -> dict[str, Any]:
        """worker.json as an object; empty when it is missing or damaged (:meth:`damage` says which)."""
        return read_json_object(self.worker_path)

    def read_report(self) -> dict[str, Any] | None:
        """report.json, or None while there is none (or it is damaged: :meth:`damage` says so)."""
        data, _ = _read_raw(self.report_path)
        return data if isinstance(data, dict) else None

    def read_events(self) -> list[Event]:
        return read_journal(self.events_path).events

    def worker_pid(self) -> int | None:
        """The worker's pid from worker.json, if it recorded a usable one."""
        pid = self.read_worker().get("pid")
        return pid if _is_whole(pid) and pid > 0 else None

    def worker_alive(self) -> bool:
        """True while the worker process recorded in worker.json still runs (pid reuse is ruled out)."""
        info = self.read_worker()
        pid = info.get("pid")
        if not _is_whole(pid) or pid <= 0 or info.get("exit_code") is not None:
            return False
        created = info.get("create_time")
        try:
            process = psutil.Process(pid)
            if not _is_number(created) or abs(process.create_time() - created) > 1.0:
                return False
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def damage(self) -> str | None:
        """One sentence naming the first damaged file of this run and what to do about it; None when all read."""
        return self._damage(read_journal(self.events_path))

    def _damage(self, journal: JournalContents) -> str | None:
        job, problem = _read_raw(self.job_path)
        if problem is None:
            problem = "it is missing" if job is None else _object_problem(job, _JOB_FIELDS)
        if problem is None and job.get("kind") not in JOB_KINDS:
            problem = (f"its kind {job.get('kind')!r} is not one of {', '.join(sorted(JOB_KINDS))} (written by "
                       "another program or a newer heretic-tui)")
        if problem is not None:
            return (f"{JOB_FILE} of the run {self.path} is damaged ({problem}): the run cannot be resumed or "
                    f"exported; restore {JOB_FILE} from a backup, or delete the run.")
        kind = JOB_KINDS[job["kind"]]
        worker, problem = _read_raw(self.worker_path)
        if problem is None and worker is not None:
            problem = _object_problem(worker, _WORKER_FIELDS)
        if problem is not None:
            return (f"{WORKER_FILE} of the run {self.path} is damaged ({problem}): whether its worker still runs is "
                    f"unknown; once no worker of this run is running, delete {WORKER_FILE}"
                    + (" and resume the run." if kind.resumable else "."))
        if journal.damage is not None:
            return (f"{EVENTS_FILE} of the run {self.path} is damaged ({journal.damage}): its screens skip what "
                    f"cannot be read; fix or delete that line of {EVENTS_FILE} to clear this.")
        state, problem = _read_raw(self.path / STATE_FILE)
        if problem is None and state is not None and not isinstance(state, dict):
            problem = f"it holds a JSON {type(state).__name__}, not an object"
        if problem is not None:
            return (f"{STATE_FILE} of the run {self.path} is damaged ({problem}): "
                    + (f"delete {STATE_FILE} and resume the run, which rebuilds it." if kind.resumable
                       else f"delete {STATE_FILE}."))
        problem = _safetensors_problem(self.path / DIRECTIONS_FILE)
        if problem is not None:
            return (f"{DIRECTIONS_FILE} of the run {self.path} is damaged ({problem}): resume the run to compute "
                    "the refusal directions again; its trials are kept.")
        report, problem = _read_raw(self.report_path)
        if problem is None and report is not None and not isinstance(report, dict):
            problem = f"it holds a JSON {type(report).__name__}, not an object"
        if problem is not None:
            return (f"{REPORT_FILE} of the run {self.path} is damaged ({problem}): "
                    + ("resume the run to write it again." if kind.resumable
                       else f"its results are only in {EVENTS_FILE} now."))
        return None

    def status(self) -> str:
        """running, finished, failed, cancelled or damaged: the one place a run's status is derived.

        From the journal's last session (the events after its last job_started) and the worker's liveness; a run
        with a damaged file is ``damaged`` whatever else is true, so the file gets named before anything trusts it.
        """
        journal = read_journal(self.events_path)
        if self._damage(journal) is not None:
            return STATUS_DAMAGED
        for item in reversed(journal.events):
            if item.terminal:
                if isinstance(item, JobFinished):
                    return STATUS_FINISHED
                return STATUS_CANCELLED if isinstance(item, JobCancelled) else STATUS_FAILED
            if item.kind == "job_started":
                break
        if self.worker_alive():
            return STATUS_RUNNING
        if not self.worker_path.exists() and time.time() - _modified(self.job_path) < STARTING_GRACE_SECONDS:
            return STATUS_RUNNING
        return STATUS_FAILED


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's header (read with the library, without loading any tensor)."""
    if not path.exists():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            handle.keys()
    except Exception as error:
        return str(error) or type(error).__name__
    return None


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def list_runs(root: Path) -> list[RunDirectory]:
    """Every run folder under root, newest first; folders that are not runs are ignored."""
    try:
        children = list(Path(root).iterdir())
    except OSError:
        return []
    runs = [RunDirectory(child.resolve()) for child in children if (child / JOB_FILE).is_file()]
    return sorted(runs, key=lambda run: _modified(run.job_path), reverse=True)
