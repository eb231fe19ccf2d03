"""Starting a job (its run folder, job.json, config.toml, the detached worker) and deleting a stopped one.

A new run is preflighted before its folder exists, so bad input leaves nothing behind; a resumed run must be a
stopped run of the same kind (a live one is attached to, not started twice).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from heretic_tui.core.atomic_files import storage_errors, write_json_atomically, write_text_atomically
from heretic_tui.core.errors import HereticError, UserInputError
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.registry import Registry
from heretic_tui.core.runs.run_directory import RunDirectory, runs_root
from heretic_tui.core.settings import Settings, render_config

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
    secret: str | None = None,
) -> JobHandle:
    """Write the run's job.json and config.toml, then launch the detached worker process.

    ``secret`` (an upload token) reaches the worker only through a pipe on its standard input, read once at start:
    never job.json, config.toml, the environment or the log, so it never touches the disk.
    """
    if not run.job_path.exists() or not arguments or not arguments.get("resume"):
        write_json_atomically(
            run.job_path,
            {"kind": kind, "arguments": arguments or {}, "created": time.time(), "model": settings.model.model},
        )
    else:
        job = run.read_job()
        job["arguments"] = {**job.get("arguments", {}), **(arguments or {})}
        write_json_atomically(run.job_path, job)
    write_text_atomically(run.config_path, render_config(settings))
    if run.worker_path.exists():
        run.worker_path.unlink()
    start_offset = run.events_path.stat().st_size if run.events_path.exists() else 0
    log = open(run.log_path, "ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "heretic_tui.core.runs.worker", str(run.path)],
            stdin=subprocess.PIPE if secret is not None else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=worker_environment(),
            cwd=os.getcwd(),
        )
    finally:
        log.close()
    if secret is not None and process.stdin is not None:
        try:
            process.stdin.write(secret.encode("utf-8") + b"\n")
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()
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


def delete_run(run: RunDirectory, registry: Registry) -> None:
    """Remove a stopped run's folder and forget it (and what lived inside it) in the caller's registry.

    A running one must be cancelled first. The folder goes first: a registry that cannot be written then leaves a
    record that lists as missing, which is the truth, and the error says how to clear it.
    """
    if run.worker_alive():
        raise UserInputError(f"The run {run.path} is still running; cancel it before deleting it.")
    with storage_errors(run.path, "delete the run folder"):
        shutil.rmtree(run.path)
    try:
        registry.forget_run(run.path)
    except HereticError as error:
        raise type(error)(f"The run folder {run.path} was deleted, but the registry could not forget it: {error}") \
            from error
