"""Starting a job (its run folder, its lock, job.json, config.toml, the detached worker) and deleting a stopped one.

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
from heretic_tui.core.runs.journal import complete_length
from heretic_tui.core.runs.registry import Registry
from heretic_tui.core.runs.run_directory import RunDirectory, runs_root
from heretic_tui.core.runs.run_lock import RunLock, held_message
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
    environment: dict[str, str] | None = None,
) -> JobHandle:
    """Take the run's lock, write its job.json and config.toml, then launch the detached worker process.

    The lock is taken before anything is written and handed to the worker (see
    :mod:`heretic_tui.core.runs.run_lock`), so a second start of the same run, even at the same instant, is refused
    with the live worker's pid and changes nothing. A new run's files are removed again when a write fails (a full
    disk), so the same command works once there is space; a resumed run keeps its old files until the new ones
    are whole.

    ``secret`` (an upload token) reaches the worker only through a pipe on its standard input, read once at start:
    never job.json, config.toml, the environment or the log, so it never touches the disk. ``environment`` adds to
    the worker's environment (``CUDA_VISIBLE_DEVICES`` of one worker per GPU).
    """
    arguments = dict(arguments or {})
    resume = bool(arguments.get("resume"))
    lock = RunLock.acquire(run)
    try:
        _write_start_files(kind, settings, run, arguments, resume)
        start_offset = complete_length(run.events_path)
        with storage_errors(run.log_path, "open the worker log"):
            log = open(run.log_path, "ab")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "heretic_tui.core.runs.worker", str(run.path),
                 "--lock-fd", str(lock.descriptor)],
                stdin=subprocess.PIPE if secret is not None else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**worker_environment(), **(environment or {})},
                cwd=os.getcwd(),
                pass_fds=(lock.descriptor,),
            )
        finally:
            log.close()
    finally:
        lock.close()
    if secret is not None and process.stdin is not None:
        try:
            process.stdin.write(secret.encode("utf-8") + b"\n")
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()
    return JobHandle(run, process, start_offset)


def _write_start_files(kind: str, settings: Settings, run: RunDirectory, arguments: dict[str, Any],
                       resume: bool) -> None:
    """job.json and config.toml of a start, and no worker.json of an earlier session (the lock is held)."""
    if resume:
        job = run.read_job()
        if job.get("kind") != kind:
            raise UserInputError(run.damage() or f"{run.path} is a '{job.get('kind')}' run, not a '{kind}' run.")
        job["arguments"] = {**(job.get("arguments") or {}), **arguments}
        write_json_atomically(run.job_path, job)
        write_text_atomically(run.config_path, render_config(settings))
    else:
        if run.job_path.exists():
            raise UserInputError(
                f"Run directory {run.path} already holds a run. Pass --resume to continue it, or choose a new "
                "--run-dir."
            )
        try:
            write_text_atomically(run.config_path, render_config(settings))
            write_json_atomically(
                run.job_path, {"kind": kind, "arguments": arguments, "created": time.time(),
                               "model": settings.model.model},
            )
        except BaseException:
            run.job_path.unlink(missing_ok=True)
            run.config_path.unlink(missing_ok=True)
            raise
    with storage_errors(run.worker_path, "remove the previous session's"):
        run.worker_path.unlink(missing_ok=True)


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
    a stopped, readable run of the same kind (a live one is attached to, not started twice: :func:`start_job`
    holds the lock that makes sure of it).
    """
    if not resume:
        if run_dir is not None and (existing := RunDirectory(Path(run_dir).expanduser().resolve())).worker_alive():
            raise UserInputError(held_message(existing))
        preflight(settings)
        return RunDirectory.create(runs_root(settings), settings.model.model, exact=run_dir)
    if run_dir is None:
        raise UserInputError(f"--resume needs --run-dir pointing at the {description} run to continue.")
    run = RunDirectory.open(run_dir)
    job = run.read_job()
    if not job:
        raise UserInputError(run.damage() or f"{run.job_path} cannot be read.")
    found = job.get("kind")
    if found != kind:
        raise UserInputError(f"{run.path} is a '{found}' run, not {description} run, so it cannot be resumed here.")
    if run.worker_alive():
        raise UserInputError(held_message(run))
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
