"""An SQLite index of runs, models and comparisons, so lists and lineage load fast without walking every folder.

Run directories stay the source of truth: :meth:`Registry.rebuild` re-derives every run and model from them, and a
deleted database loses nothing. The index only remembers what folders cannot say on their own (comparisons, models
recorded by hand) and where things were: a run or model whose folder is gone is listed with status ``missing``
instead of vanishing or raising, so the user sees what moved.

The database is shared by the worker process and the TUI, so it runs in WAL mode (readers never block the writer),
every write is one short ``BEGIN IMMEDIATE`` transaction, and a busy database is waited for a few seconds (our own
writes take milliseconds); one held longer than that by another program is a clear error, not a hang.

A run's status is never trusted from the index while its folder exists: :meth:`RunDirectory.status` is the one place
it is derived, and the stored column only tells what a run was when its folder went missing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import sys
import time
import tomllib
from datetime import datetime
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.atomic_files import read_json_object
from heretic_tui.core.models.references import normalise_model_reference
from heretic_tui.core.shipping.metadata import METADATA_FILE, read_metadata
from heretic_tui.core.runs.events import ArtifactWritten
from heretic_tui.core.runs.job_kinds import JOB_KINDS
from heretic_tui.core.runs.run_directory import RunDirectory, list_runs
from heretic_tui.core.settings import APP_NAME

SCHEMA_VERSION = 1
DATABASE_NAME = "registry.sqlite3"
JOBS_FOLDER = "jobs"
"""Sub-folder of a run holding the runs of jobs made from it (exports), see :func:`heretic_tui.core.shipping.export.start_export`."""
BUSY_TIMEOUT_SECONDS = 5.0
"""How long a write waits for another process's transaction before the registry reports it as held."""

ROLE_BASE = "base"
ROLE_ABLITERATED = "abliterated"
ROLE_FINE_TUNED = "fine-tuned"
ROLES = (ROLE_BASE, ROLE_ABLITERATED, ROLE_FINE_TUNED)

STATUS_MISSING = "missing"
STATUS_AVAILABLE = "available"
STATUS_EXTERNAL = "external"
"""A model known by a Hub id or a built-in name rather than a folder, so there is nothing to find missing."""

MODEL_ARTIFACT_NAMES = {"export", "model", "adapter", "merged", "fine-tuned", "abliterated"}
_FINE_TUNE_WORDS = ("tune", "train", "lora", "sft", "dpo", "adapter")
"""Words in a heretic.json ``method`` (ours or another tool's) that mean a fine-tuned model."""
_METADATA_SEARCH_DEPTH = 3

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    settings TEXT NOT NULL,
    metrics TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS models (
    path TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    parent_path TEXT,
    run_path TEXT,
    trial INTEGER,
    method TEXT,
    created REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS models_by_parent ON models (parent_path)",
    """CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    models TEXT NOT NULL,
    prompts_source TEXT NOT NULL,
    result_path TEXT NOT NULL
    )""",
)


@dataclass(frozen=True)
class RunRecord:
    """One run as indexed; ``status`` is ``missing`` when its folder no longer exists."""

    path: Path
    kind: str
    status: str
    model: str
    created: float
    settings: dict[str, Any]
    metrics: dict[str, Any] | None


@dataclass(frozen=True)
class ModelRecord:
    """One model: a folder (or, for a base model, possibly a Hub id) with where it came from."""

    path: str
    name: str
    role: str
    parent_path: str | None
    run_path: str | None
    trial: int | None
    method: str | None
    created: float
    status: str


@dataclass(frozen=True)
class ComparisonRecord:
    """One side-by-side comparison of models on a prompt set, and where its result was written."""

    id: int
    created: float
    models: list[str]
    prompts_source: str
    result_path: str


def default_database_path() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME)) / DATABASE_NAME


def _is_local(reference: str) -> bool:
    return Path(reference).is_absolute()


class Registry:
    """The index; every method opens its own short connection, so one instance is safe across threads."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_database_path()
        self._initialise()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)) as connection:
                connection.row_factory = sqlite3.Row
                connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
                yield connection
        except sqlite3.DatabaseError as error:
            if type(error) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise
            if "locked" in str(error) or "busy" in str(error):
                raise UserInputError(
                    f"The registry {self.path} is held by another process and stayed locked for "
                    f"{BUSY_TIMEOUT_SECONDS:.0f} s, so nothing was changed in it. Run the command again once that "
                    "process is done (another heretic-tui writes it for milliseconds only; an sqlite3 shell or a "
                    "backup tool may hold it longer). It is only an index of the run folders: deleting it and "
                    "running `heretic-tui registry rebuild` is always safe."
                ) from None
            raise UserInputError(
                f"The registry {self.path} cannot be used ({error}). Delete the file: it is an index and is "
                "rebuilt from the run folders."
            ) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: the write lock is taken up front, so two writers queue instead of deadlocking."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _initialise(self) -> None:
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode = WAL")
        with self._write() as connection:
            for statement in _SCHEMA:
                connection.execute(statement)
            row = connection.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row["version"] > SCHEMA_VERSION:
                raise UserInputError(
                    f"The registry {self.path} was written by a newer heretic-tui (schema {row['version']}, this "
                    f"version knows {SCHEMA_VERSION}). Update heretic-tui, or delete the file to rebuild it."
                )

    def record_run(self, run_path: Path) -> RunRecord:
        """Index one run folder and the models it wrote (call it when a job ends; safe to call again)."""
        run, models = _read_run(RunDirectory.open(run_path))
        with self._write() as connection:
            _upsert_run(connection, run)
            for model in models:
                _upsert_model(connection, model)
        return self._run_status(run)

    def record_model(
        self,
        path: str | Path,
        *,
        role: str,
        name: str | None = None,
        parent_path: str | Path | None = None,
        run_path: str | Path | None = None,
        trial: int | None = None,
        method: str | None = None,
    ) -> ModelRecord:
        """Index a model, e.g. a base model the user picked; an existing record of the same path is replaced."""
        if role not in ROLES:
            raise UserInputError(f"Model role {role!r} is not valid; use one of {', '.join(ROLES)}.")
        reference = normalise_model_reference(path)
        model = ModelRecord(
            path=reference,
            name=name or Path(reference).name or reference,
            role=role,
            parent_path=normalise_model_reference(parent_path) if parent_path else None,
            run_path=str(Path(run_path).resolve()) if run_path else None,
            trial=trial,
            method=method,
            created=time.time(),
            status="",
        )
        with self._write() as connection:
            _upsert_model(connection, model, replace=True)
        return _with_model_status(model)

    def record_comparison(
        self, models: Iterable[str | Path], prompts_source: str, result_path: Path
    ) -> ComparisonRecord:
        """Remember a comparison: nothing in the run folders says which models were compared on which prompts."""
        references = [normalise_model_reference(model) for model in models]
        created = time.time()
        with self._write() as connection:
            cursor = connection.execute(
                "INSERT INTO comparisons (created, models, prompts_source, result_path) VALUES (?, ?, ?, ?)",
                (created, json.dumps(references), prompts_source, str(Path(result_path).resolve())),
            )
            identifier = int(cursor.lastrowid or 0)
        return ComparisonRecord(identifier, created, references, prompts_source, str(Path(result_path).resolve()))

    def rebuild(self, runs_root: Path, model_directories: Iterable[Path] = ()) -> None:
        """Re-index every run under ``runs_root`` (with the jobs kept inside each run) and every model folder with a
        heretic.json found in a run folder or in ``model_directories``.

        Records whose folders are gone are kept (they list as missing); running it twice changes nothing.
        Everything is read before the write lock is taken, so the TUI is never blocked for a folder walk.
        """
        runs: list[RunRecord] = []
        models: dict[str, ModelRecord] = {}
        for run_directory in _runs_with_jobs(Path(runs_root).expanduser()):
            run, found = _read_run(run_directory)
            runs.append(run)
            _merge_models(models, found)
        for directory in model_directories:
            found = [_model_from_metadata(folder, None) for folder in _metadata_folders(Path(directory).expanduser())]
            _merge_models(models, _with_parents(found))
        with self._write() as connection:
            for run in runs:
                _upsert_run(connection, run)
            for model in _bases_first(models.values()):
                _upsert_model(connection, model)

    def list_runs(self) -> list[RunRecord]:
        """Every indexed run, newest first."""
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM runs ORDER BY created DESC, path").fetchall()
        return [self._run_status(_run_from_row(row)) for row in rows]

    def list_models(self, role: str | None = None) -> list[ModelRecord]:
        """Every indexed model (optionally of one role), newest first."""
        query = "SELECT * FROM models" + (" WHERE role = ?" if role else "") + " ORDER BY created DESC, path"
        with self._connect() as connection:
            rows = connection.execute(query, (role,) if role else ()).fetchall()
        return [_with_model_status(_model_from_row(row)) for row in rows]

    def list_comparisons(self) -> list[ComparisonRecord]:
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM comparisons ORDER BY created DESC, id DESC").fetchall()
        return [
            ComparisonRecord(
                row["id"], row["created"], json.loads(row["models"]), row["prompts_source"], row["result_path"]
            )
            for row in rows
        ]

    def model(self, path: str | Path) -> ModelRecord | None:
        with self._connect() as connection:
            row = connection.execute(
                "SELECT * FROM models WHERE path = ?", (normalise_model_reference(path),)
            ).fetchone()
        return _with_model_status(_model_from_row(row)) if row else None

    def lineage(self, model_path: str | Path) -> list[ModelRecord]:
        """The chain from the base model to ``model_path`` (e.g. base -> abliterated -> fine-tuned).

        A parent that was never indexed (a Hub id the run downloaded) still appears, as a base model, so the chain
        always starts where the user's work started. Unknown paths give an empty list.
        """
        chain: list[ModelRecord] = []
        seen: set[str] = set()
        reference: str | None = normalise_model_reference(model_path)
        with self._connect() as connection:
            while reference is not None and reference not in seen:
                seen.add(reference)
                row = connection.execute("SELECT * FROM models WHERE path = ?", (reference,)).fetchone()
                if row is None:
                    if chain:
                        chain.append(_with_model_status(_base_model(reference, chain[-1].created)))
                    break
                record = _with_model_status(_model_from_row(row))
                chain.append(record)
                reference = record.parent_path
        return list(reversed(chain))

    def children(self, model_path: str | Path) -> list[ModelRecord]:
        """Models made directly from ``model_path``, for showing what a base model led to."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM models WHERE parent_path = ? ORDER BY created, path",
                (normalise_model_reference(model_path),),
            ).fetchall()
        return [_with_model_status(_model_from_row(row)) for row in rows]

    def forget_run(self, run_path: Path) -> int:
        """Drop a run that was deleted, the jobs kept inside it and the models whose folders were inside it.

        Models the run produced elsewhere (an export into another folder) stay: they still exist. Returns how many
        records went.
        """
        path = str(Path(run_path).expanduser().resolve())
        inside = path.rstrip("/") + "/"
        values = (path, len(inside), inside)
        with self._write() as connection:
            runs = connection.execute("DELETE FROM runs WHERE path = ? OR substr(path, 1, ?) = ?", values).rowcount
            models = connection.execute("DELETE FROM models WHERE path = ? OR substr(path, 1, ?) = ?", values).rowcount
        return runs + models

    def forget_missing(self) -> int:
        """Drop runs and models whose folders are gone (the user's explicit clean-up); returns how many."""
        missing_runs = [run.path for run in self.list_runs() if run.status == STATUS_MISSING]
        missing_models = [model.path for model in self.list_models() if model.status == STATUS_MISSING]
        with self._write() as connection:
            connection.executemany("DELETE FROM runs WHERE path = ?", [(str(path),) for path in missing_runs])
            connection.executemany("DELETE FROM models WHERE path = ?", [(path,) for path in missing_models])
        return len(missing_runs) + len(missing_models)

    def _run_status(self, run: RunRecord) -> RunRecord:
        """The record with its status now: the folder's own (RunDirectory.status), or missing without a folder."""
        return dataclasses.replace(run, status=_current_status(RunDirectory(run.path)))


def _current_status(run: RunDirectory) -> str:
    if not run.job_path.is_file():
        return STATUS_MISSING
    try:
        return run.status()
    except OSError:
        return STATUS_MISSING


def timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a number, a numeric string or an ISO 8601 date (``2026-01-02T03:04:05Z``).

    job.json stores ``time.time()``, heretic.json of an export or a merge an ISO date; a value that is neither is
    None, so the caller falls back to the file's modification time instead of failing the whole index.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
        return number if math.isfinite(number) else None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def _runs_with_jobs(root: Path) -> list[RunDirectory]:
    """Every run under root plus the jobs kept inside a run (an export runs in ``RUN/jobs/export-...``)."""
    found = []
    for run in list_runs(root):
        found.append(run)
        found.extend(list_runs(run.path / JOBS_FOLDER))
    return found


def _read_settings(run: RunDirectory) -> dict[str, Any]:
    try:
        return tomllib.loads(run.config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _read_run(run: RunDirectory) -> tuple[RunRecord, list[ModelRecord]]:
    """A run's record and the models it produced, read from its folder; a damaged file never raises."""
    job = read_json_object(run.job_path)
    kind = str(job.get("kind") or "unknown")
    model = str(job.get("model") or "")
    created = timestamp(job.get("created"))
    if created is None:
        created = _modified(run.job_path)
    record = RunRecord(run.path, kind, _current_status(run), model, created, _read_settings(run), run.read_report())
    models: dict[str, ModelRecord] = {}
    for item in run.read_events():
        if isinstance(item, ArtifactWritten) and _is_model_artifact(item):
            folder = Path(item.path).expanduser()
            folder = folder if folder.is_absolute() else run.path / folder
            found = _model_from_metadata(folder.resolve(), record, created=item.time)
            models[found.path] = found
    for folder in _metadata_folders(run.path):
        found = _model_from_metadata(folder, record)
        models.setdefault(found.path, found)
    return record, _with_parents(models.values())


def _is_model_artifact(item: ArtifactWritten) -> bool:
    if item.name in MODEL_ARTIFACT_NAMES:
        return True
    folder = Path(item.path).expanduser()
    return any((folder / name).is_file() for name in ("config.json", "adapter_config.json", METADATA_FILE))


def _metadata_folders(root: Path) -> list[Path]:
    """Folders holding a heretic.json, at most a few levels below root (exports live inside or next to runs)."""
    found = []
    pending = [(root, 0)]
    while pending:
        folder, depth = pending.pop()
        if (folder / METADATA_FILE).is_file():
            found.append(folder.resolve())
        if depth < _METADATA_SEARCH_DEPTH:
            try:
                pending.extend((child, depth + 1) for child in folder.iterdir() if child.is_dir())
            except OSError:
                continue
    return sorted(found)


def _role(metadata: dict[str, Any], kind: str) -> str:
    """The role a heretic.json declares, or its method suggests, or else the one the producing job kind makes."""
    declared = str(metadata.get("role") or "")
    if declared in ROLES:
        return declared
    method = str(metadata.get("method") or "").lower()
    if "abliter" in method:
        return ROLE_ABLITERATED
    if any(word in method for word in _FINE_TUNE_WORDS):
        return ROLE_FINE_TUNED
    produced = JOB_KINDS[kind].model_role if kind in JOB_KINDS else None
    return produced if produced in ROLES else ROLE_ABLITERATED


def _model_from_metadata(folder: Path, run: RunRecord | None, created: float | None = None) -> ModelRecord:
    """A produced model from its heretic.json, falling back to what the producing run says about it."""
    metadata = read_metadata(folder)
    source = metadata.get("source_model") or (run.model if run else "")
    run_path = metadata.get("run_dir") or (str(run.path) if run else None)
    trial = metadata.get("trial")
    if created is None:
        created = timestamp(metadata.get("created"))
    if created is None:
        created = run.created if run else _modified(folder)
    return ModelRecord(
        path=str(folder),
        name=str(metadata.get("name") or folder.name),
        role=_role(metadata, run.kind if run else ""),
        parent_path=normalise_model_reference(source) if source else None,
        run_path=str(Path(run_path).expanduser().resolve()) if run_path else None,
        trial=int(trial) if isinstance(trial, (int, float, str)) and str(trial).lstrip("-").isdigit() else None,
        method=str(metadata["method"]) if metadata.get("method") else None,
        created=created,
        status="",
    )


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _base_model(reference: str, created: float) -> ModelRecord:
    name = Path(reference).name if _is_local(reference) else reference
    return ModelRecord(reference, name, ROLE_BASE, None, None, None, None, created, "")


def _with_parents(models: Iterable[ModelRecord]) -> list[ModelRecord]:
    """The produced models plus a base placeholder for each parent that is not itself one of them."""
    produced = list(models)
    paths = {model.path for model in produced}
    parents = {
        model.parent_path: _base_model(model.parent_path, model.created)
        for model in produced
        if model.parent_path and model.parent_path not in paths
    }
    return list(parents.values()) + produced


def _is_placeholder(model: ModelRecord) -> bool:
    return model.role == ROLE_BASE and model.run_path is None


def _merge_models(known: dict[str, ModelRecord], found: Iterable[ModelRecord]) -> None:
    """Add models to ``known``; a base placeholder (a parent seen from its child) never hides the real record."""
    for model in found:
        existing = known.get(model.path)
        if existing is None or (_is_placeholder(existing) and not _is_placeholder(model)):
            known[model.path] = model


def _bases_first(models: Iterable[ModelRecord]) -> list[ModelRecord]:
    return sorted(models, key=lambda model: model.role != ROLE_BASE)


def _upsert_run(connection: sqlite3.Connection, run: RunRecord) -> None:
    connection.execute(
        """INSERT INTO runs (path, kind, status, model, created, settings, metrics) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (path) DO UPDATE SET kind = excluded.kind, status = excluded.status, model = excluded.model,
           created = excluded.created, settings = excluded.settings, metrics = excluded.metrics""",
        (
            str(run.path),
            run.kind,
            run.status,
            run.model,
            run.created,
            json.dumps(run.settings, default=str),
            json.dumps(run.metrics, default=str) if run.metrics is not None else None,
        ),
    )


def _upsert_model(connection: sqlite3.Connection, model: ModelRecord, *, replace: bool = False) -> None:
    """Insert or update a model; a base placeholder never overwrites what is already known about that path."""
    values = (
        model.path,
        model.name,
        model.role,
        model.parent_path,
        model.run_path,
        model.trial,
        model.method,
        model.created,
    )
    if _is_placeholder(model) and not replace:
        connection.execute(
            "INSERT INTO models (path, name, role, parent_path, run_path, trial, method, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO NOTHING",
            values,
        )
        return
    connection.execute(
        """INSERT INTO models (path, name, role, parent_path, run_path, trial, method, created)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (path) DO UPDATE SET name = excluded.name, role = excluded.role,
           parent_path = excluded.parent_path, run_path = excluded.run_path, trial = excluded.trial,
           method = excluded.method, created = excluded.created""",
        values,
    )


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        path=Path(row["path"]),
        kind=row["kind"],
        status=row["status"],
        model=row["model"],
        created=row["created"],
        settings=json.loads(row["settings"]),
        metrics=json.loads(row["metrics"]) if row["metrics"] is not None else None,
    )


def _model_from_row(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(
        path=row["path"],
        name=row["name"],
        role=row["role"],
        parent_path=row["parent_path"],
        run_path=row["run_path"],
        trial=row["trial"],
        method=row["method"],
        created=row["created"],
        status="",
    )


def _with_model_status(model: ModelRecord) -> ModelRecord:
    if not _is_local(model.path):
        status = STATUS_EXTERNAL
    elif Path(model.path).is_dir():
        status = STATUS_AVAILABLE
    else:
        status = STATUS_MISSING
    return dataclasses.replace(model, status=status)


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def record_finished_run(run_path: Path, warn: Callable[[str], None] | None = None) -> None:
    """Index a run (and the models it wrote) when its job ends.

    The registry is only an index, so a locked or damaged database must never turn a finished job into a failed
    one: any problem becomes a warning that says how to catch up later.
    """
    try:
        Registry().record_run(run_path)
    except Exception as error:
        (warn or _print_warning)(
            f"the run could not be recorded in the registry ({type(error).__name__}: {error}); "
            "`heretic-tui registry rebuild` indexes it later"
        )


def record_produced_model(
    folder: Path, metadata: dict[str, Any], *, role: str, warn: Callable[[str], None] | None = None
) -> None:
    """Index a model folder a job just wrote, linked to its source model, run and trial from its heretic.json.

    Like :func:`record_finished_run`, a registry problem is only a warning: the folder is what the user asked for.
    """
    source = metadata.get("source_model")
    trial = metadata.get("trial")
    try:
        Registry().record_model(
            folder,
            role=role,
            name=str(metadata.get("name") or Path(folder).name),
            parent_path=str(source) if source else None,
            run_path=metadata.get("run_dir") or None,
            trial=int(trial) if isinstance(trial, int) else None,
            method=str(metadata["method"]) if metadata.get("method") else None,
        )
    except Exception as error:
        (warn or _print_warning)(
            f"the model {folder} could not be recorded in the registry ({type(error).__name__}: {error}); "
            "`heretic-tui registry rebuild` indexes it later"
        )
