"""Starting the workers of a study several workers share: a new run (--storage), a joined worker (--join), one
worker per GPU (--gpus all).

Every worker is a job of its own run folder, with its own lock, events.jsonl and worker.log, so the rule of one
writer per run folder holds unchanged; what the workers share is the study in the database. A worker joining a run
on this box gets a folder inside that run (``RUN/workers/<host>-<n>``); a worker joining by URL on another box gets
a run folder of its own there, with the settings the study's starter recorded. A run whose study is in its journal
file (or in SQLite) is refused a second writer with one paragraph (exit code 2).
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
from pathlib import Path

from heretic_tui.core.abliteration.study import create_shared_study
from heretic_tui.core.abliteration.study_storage import (
    JOIN_ARGUMENT,
    STORAGE_ARGUMENT,
    STUDY_ARGUMENT,
    StudyLocation,
    check_shareable,
    check_storage_url,
    location_of_run,
    open_rdb_storage,
)
from heretic_tui.core.atomic_files import storage_errors
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import prepare_run, start_job
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings, render_config, setting_fields

WORKERS_FOLDER = "workers"
"""The folder inside a run that holds the run folders of the workers that joined it on this box."""


def start_shared_run(settings: Settings, storage: str, study: str | None = None, run_dir: Path | None = None,
                     export_chosen: bool = False, environment: dict[str, str] | None = None) -> JobHandle:
    """A new run whose study lives in ``storage``, named ``study`` (default: the run folder's name).

    The database is reached and its tables made before the run folder exists, so a wrong URL or an unreachable
    server leaves nothing behind; a study name already taken removes the new (still empty) folder again.
    """
    check_storage_url(storage)
    open_rdb_storage(StudyLocation(storage, study or ""))
    from heretic_tui.core.abliteration.job import preflight

    run = prepare_run("abliterate", settings, run_dir, False, preflight, "an abliteration")
    location = StudyLocation(storage, study or run.path.name)
    try:
        create_shared_study(location, render_config(without_secrets(settings)),
                            settings.optimization.capability_objective)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    arguments = {"resume": False, "export_chosen": export_chosen, STORAGE_ARGUMENT: storage,
                 STUDY_ARGUMENT: location.name}
    return start_job("abliterate", settings, run, arguments, environment=environment)


def without_secrets(settings: Settings) -> Settings:
    """The settings as the study records them for other boxes: every private setting (an API key, the notify
    command and URL) left at its default, because the database is readable by every worker's user."""
    copied = copy.deepcopy(settings)
    for spec in setting_fields():
        if spec.private:
            setattr(getattr(copied, spec.section), spec.name, spec.default)
    return copied


def join_study(settings: Settings, location: StudyLocation, run_dir: Path | None = None,
               environment: dict[str, str] | None = None) -> JobHandle:
    """Start one more worker on the study at ``location``, in a new run folder (``run_dir``, or a dated one)."""
    check_shareable(location, f"The study ({location.describe()})")
    from heretic_tui.core.abliteration.job import preflight

    run = prepare_run("abliterate", settings, run_dir, False, preflight, "an abliteration")
    arguments = {"resume": False, JOIN_ARGUMENT: True, STORAGE_ARGUMENT: location.url, STUDY_ARGUMENT: location.name}
    return start_job("abliterate", settings, run, arguments, environment=environment)


def join_run(settings: Settings, run: RunDirectory, environment: dict[str, str] | None = None) -> JobHandle:
    """Start one more worker on the study of the run in ``run``, in a worker folder inside that run."""
    location = location_of_run(run.path)
    check_shareable(location, f"The run {run.path}")
    return join_study(settings, location, claim_worker_folder(run), environment)


def claim_worker_folder(run: RunDirectory) -> Path:
    """A new, empty ``RUN/workers/<host>-<n>``: ``mkdir`` of a name nobody has taken, so two joins never share one."""
    parent = run.path / WORKERS_FOLDER
    host = socket.gethostname().split(".")[0] or "worker"
    with storage_errors(parent, "create the workers folder"):
        parent.mkdir(exist_ok=True)
        index = 1
        while True:
            folder = parent / f"{host}-{index}"
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                index += 1


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries (respecting one set already)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    return listed[:count] if listed else [str(index) for index in range(count)]


def start_per_gpu(settings: Settings, storage: str | None, study: str | None = None,
                  run_dir: Path | None = None) -> list[JobHandle]:
    """One worker per visible GPU on one shared study: the run itself on the first, joined workers on the others."""
    if not storage:
        raise UserInputError(
            "--gpus all starts one worker per GPU on one study, which the run folder's journal file cannot take "
            "(it is safe for one writer only). Add --storage postgresql://user@host:5432/database to keep the study "
            "in PostgreSQL."
        )
    check_storage_url(storage)
    check_shareable(StudyLocation(storage), f"--storage {storage}: the study")
    gpus = visible_gpus()
    if not gpus:
        raise UserInputError(
            "--gpus all found no CUDA GPU (torch sees none; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}). Run without --gpus on this machine, or install "
            "a CUDA build of torch into heretic-tui's environment."
        )
    first = start_shared_run(settings, storage, study, run_dir, environment={"CUDA_VISIBLE_DEVICES": gpus[0]})
    handles = [first]
    for gpu in gpus[1:]:
        handles.append(join_run(settings, first.run, environment={"CUDA_VISIBLE_DEVICES": gpu}))
    return handles
