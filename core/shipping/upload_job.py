"""The upload job (kind ``upload``): a model folder sent to the Hugging Face Hub by a detached worker.

An upload of a large model takes as long as a trial search, so it runs like every other job: its own run folder
(job.json, config.toml with the ``[hub]`` timeouts, events.jsonl, worker.log, report.json), a worker in its own
session that an SSH drop or a closed app does not stop, events any screen or ``heretic-tui attach`` can follow, and
a resume that sends only what the Hub does not have yet (same size and hash), so an interrupted upload costs only
the file that was in flight.

Events, in order: ``phase_started``/``phase_finished`` for ``check`` (the folder, the model card), ``prepare`` (the
repository is created or opened, the files already there listed), ``upload`` (one ``progress`` per file, and
:class:`~heretic_tui.core.runs.events.FileProgress` while each file is sent: bytes of the file and of the whole
upload) and ``commit``; then ``artifact`` (name ``repository``, path: the repository URL) and ``job_finished``
whose summary holds ``url``, ``repo``, ``files``, ``sent``, ``already_on_hub``, ``bytes`` and ``bytes_sent``.

The token reaches the worker only through ``start_job(..., secret=token)`` (a pipe on the worker's standard input)
and lives in memory there: never job.json, config.toml, the environment, an event or worker.log; every error text
and every library log record is scrubbed of it. A cancel (Ctrl-C in the follower, the dashboard's cancel) stops the
transfer in flight at once, and the job ends as cancelled (exit 130) with what was sent kept on the Hub.
"""

from __future__ import annotations

import copy
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import constants

from heretic_tui.core.atomic_files import write_json_atomically
from heretic_tui.core.errors import HereticError, JobCancelled, UserInputError
from heretic_tui.core.hub_network import LOGIN_HELP, scrub_secrets, scrubbed_library_logs
from heretic_tui.core.runs.events import ArtifactWritten, FileProgress
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import prepare_run, start_job
from heretic_tui.core.runs.run_directory import RunDirectory, runs_root
from heretic_tui.core.runs.worker import JobContext
from heretic_tui.core.settings import Settings, load_settings
from heretic_tui.core.shipping.hub import (
    STATE_ON_HUB,
    STATE_SENT,
    FileTransfer,
    resolve_token,
    upload_model_folder,
    validate_model_folder,
    validate_repo_name,
)

KIND = "upload"
RESUME_HINT = "Then resume the upload (`heretic-tui upload --resume --run-dir {run}`): files already sent are kept."


def start_upload(
    folder: str | Path | None,
    repo: str | None,
    *,
    private: bool = True,
    token: str,
    run_dir: str | Path | None = None,
    resume: bool = False,
    endpoint: str | None = None,
    settings: Settings | None = None,
) -> JobHandle:
    """Check the request (no network needed), then upload in a worker job and return its handle at once.

    A new upload gets a run folder under the runs root (or exactly ``run_dir``). ``resume=True`` continues the
    upload in ``run_dir`` with its folder, repository, visibility and endpoint; ``folder`` and ``repo`` may then be
    None, and must match when given. The endpoint (default: HF_ENDPOINT or the public Hub) is recorded, so a resume
    goes to the same Hub. ``settings`` defaults to the user's (their ``[hub]`` timeouts apply).
    """
    token = (token or "").strip()
    if not token:
        raise UserInputError(f"No Hugging Face token was given for the upload. {LOGIN_HELP}")
    settings = copy.deepcopy(settings) if settings is not None else load_settings()
    if resume:
        run = prepare_run(KIND, settings, Path(run_dir) if run_dir is not None else None, True, _no_preflight,
                          "an upload")
        recorded = run.read_job().get("arguments") or {}
        _check_unchanged(run, "folder", folder, recorded.get("folder"), resolve=True)
        _check_unchanged(run, "repository", repo, recorded.get("repo"), resolve=False)
        validate_model_folder(Path(str(recorded.get("folder"))))
        settings.model.model = str(recorded.get("folder"))
        return start_job(KIND, settings, run, {"resume": True}, secret=token)
    if folder is None or not repo:
        raise UserInputError("An upload needs a model folder and a repository name (owner/name).")
    folder_path = Path(folder).expanduser().resolve()
    validate_repo_name(repo)
    validate_model_folder(folder_path)
    settings.model.model = str(folder_path)
    run = RunDirectory.create(runs_root(settings), f"upload-{folder_path.name}",
                              exact=Path(run_dir) if run_dir is not None else None)
    arguments = {"folder": str(folder_path), "repo": repo, "private": bool(private),
                 "endpoint": endpoint or constants.ENDPOINT}
    return start_job(KIND, settings, run, arguments, secret=token)


def resume_upload(settings: Settings, run_dir: Path | None, resume: bool = False) -> JobHandle:
    """The job kind's settings-only start: resume an upload with the token of HF_TOKEN or the cached login.

    A new upload needs a folder and a repository, so only a resume can start from settings alone.
    """
    if not resume:
        raise UserInputError("An upload starts from a model folder and a repository: `heretic-tui upload FOLDER`.")
    return start_upload(None, None, token=resolve_token(None), run_dir=run_dir, resume=True, settings=settings)


def _no_preflight(settings: Settings) -> None:
    """A resumed upload is checked against its own job.json instead."""


def _check_unchanged(run: RunDirectory, what: str, given: str | Path | None, recorded: Any, *, resolve: bool) -> None:
    if recorded in (None, ""):
        raise UserInputError(run.damage() or f"{run.job_path} names no {what}, so this upload cannot be resumed.")
    if given is None or given == "":
        return
    same = Path(given).expanduser().resolve() == Path(str(recorded)) if resolve else str(given) == str(recorded)
    if not same:
        raise UserInputError(
            f"The upload in {run.path} sends {recorded} ({what}), not {given}. Resume it without naming the {what}, "
            "or start a new upload for the other one."
        )


@contextmanager
def _cancel_stops_transfers(context: JobContext) -> Iterator[None]:
    """A cancel interrupts the request in flight (a multi-gigabyte file would otherwise finish first).

    The worker's own handler only sets a flag that pipelines read between steps; an upload spends its time inside
    single requests, so here the signal raises :class:`JobCancelled` right away. What reached the Hub stays there.
    """

    def cancel(signum: int, frame: Any) -> None:
        if context.cancel_requested:
            return
        context.cancel_requested = True
        print(f"cancel requested (signal {signum}); stopping the transfer in flight", flush=True)
        raise JobCancelled()

    previous = {number: signal.signal(number, cancel) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(context: JobContext) -> dict[str, Any]:
    """Worker entry for kind 'upload': arguments folder, repo, private, endpoint; the token is the job's secret."""
    token = (context.secret or "").strip()
    if not token:
        raise UserInputError(
            f"The upload worker got no token. Start the upload again with a token: {LOGIN_HELP} Or pass it on "
            "standard input with --token-stdin."
        )
    arguments = context.arguments
    folder = Path(str(arguments.get("folder") or ""))
    repo = str(arguments.get("repo") or "")
    hint = RESUME_HINT.format(run=context.run.path)
    latest: dict[str, FileTransfer] = {}

    def on_file(transfer: FileTransfer) -> None:
        latest[transfer.path] = transfer
        context.emit(FileProgress(path=transfer.path, done=transfer.done, size=transfer.size, state=transfer.state,
                                  total_done=transfer.total_done, total=transfer.total))

    try:
        with scrubbed_library_logs([token]), _cancel_stops_transfers(context):
            url = upload_model_folder(
                folder, repo, private=bool(arguments.get("private", True)), token=token,
                endpoint=arguments.get("endpoint") or None, on_file=on_file, settings=context.settings.hub,
                observer=context, hint=hint,
            )
    except JobCancelled:
        raise
    except HereticError as error:
        if context.cancel_requested:
            raise JobCancelled() from None
        raise type(error)(scrub_secrets(str(error), [token])) from None
    except Exception as error:
        if context.cancel_requested:
            raise JobCancelled() from None
        print(scrub_secrets(traceback.format_exc(), [token]), flush=True)
        raise HereticError(scrub_secrets(
            f"The upload of {folder} to {repo} failed: {type(error).__name__}: {error}. worker.log in "
            f"{context.run.path} has the details. {hint}", [token])) from None
    sent = [item for item in latest.values() if item.state == STATE_SENT]
    summary = {
        "status": "finished",
        "url": url,
        "repo": repo,
        "folder": str(folder),
        "private": bool(arguments.get("private", True)),
        "files": len(latest),
        "sent": len(sent),
        "already_on_hub": sum(1 for item in latest.values() if item.state == STATE_ON_HUB),
        "bytes": sum(item.size for item in latest.values()),
        "bytes_sent": sum(item.size for item in sent),
    }
    write_json_atomically(context.run.report_path, summary)
    context.emit(ArtifactWritten(name="repository", path=url))
    context.log(f"uploaded {folder} to {url} ({summary['sent']} files sent, {summary['already_on_hub']} already there)")
    return summary
