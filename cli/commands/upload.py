"""``heretic-tui upload``: send a model or adapter folder to the Hugging Face Hub, as a detached job.

The folder and the name are checked first (no token needed to learn they are wrong); then the upload runs in a
worker of its own run folder, so an SSH drop does not stop it, ``heretic-tui attach RUN_DIR`` follows it from
anywhere, Ctrl-C cancels it cleanly (exit 130), and ``--resume --run-dir RUN_DIR`` sends only what the Hub does not
have yet. The token is read from the environment, the cached login, one line of stdin (``--token-stdin``) or, only
when a person is at the terminal and ``--headless`` is not given, one hidden prompt; it reaches the worker through a
pipe and is never printed or stored. The URL goes to stdout and progress to stderr, so a script can capture the one
without the other.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from rich.filesize import decimal

from heretic_tui.cli.arguments import (
    add_headless_flag,
    add_resume_flags,
    add_settings_flags,
    resumed_config,
    run_dir_path,
    settings_from_arguments,
)
from heretic_tui.cli.following import ProgressPrinter, follow, progress_line
from heretic_tui.core.errors import EXIT_CANCELLED, EXIT_OK, UserInputError
from heretic_tui.core.runs.events import Event, FileProgress, JobFinished, Progress

NAME = "upload"
HELP = "upload a model or adapter folder to the Hugging Face Hub (a job: resumable, survives an SSH drop)"
SENDING_LINE_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?",
                        help="model or adapter folder to upload (config.json and weights, or an adapter); "
                             "not needed with --resume")
    parser.add_argument("--repo", help="repository id owner/name (default: <your user>/<folder name>-heretic)")
    parser.add_argument("--public", action="store_true", help="make the repository public (default: private)")
    parser.add_argument("--token-stdin", action="store_true",
                        help="read the token from the first line of stdin instead of HF_TOKEN or the cached login")
    add_settings_flags(parser)
    add_resume_flags(parser, "continue the upload in --run-dir; files already on the Hub are not sent again")
    add_headless_flag(parser, "never ask for anything; a missing token is an error")


def read_token(arguments: argparse.Namespace) -> str:
    """The upload token: stdin when asked, else HF_TOKEN or the cached login, else one hidden prompt at a terminal.

    Headless (or without a terminal) a missing token is an error at once: there is nobody to answer a prompt, and
    asking again in a loop would hang a script.
    """
    from heretic_tui.core.hub_network import LOGIN_HELP
    from heretic_tui.core.shipping.hub import resolve_token

    if arguments.token_stdin:
        line = sys.stdin.readline().strip()
        if not line:
            raise UserInputError(
                "--token-stdin was given but standard input held no token. Pipe the token in, e.g. "
                "`printenv MY_HF_TOKEN | heretic-tui upload ... --token-stdin`."
            )
        return resolve_token(line)
    try:
        return resolve_token(None)
    except UserInputError:
        if arguments.headless or not sys.stdin.isatty():
            raise UserInputError(
                f"No Hugging Face token found, and --headless never asks for one. {LOGIN_HELP} Or pass the token on "
                "standard input with --token-stdin."
            ) from None
    typed = getpass.getpass("Hugging Face token with write access (input hidden): ")
    return resolve_token(typed)


class UploadPrinter(ProgressPrinter):
    """The job's lines, with one line per file (and every few seconds while a large one is sent)."""

    def __init__(self) -> None:
        super().__init__()
        self._last_sending = 0.0

    def __call__(self, item: Event) -> None:
        if isinstance(item, Progress) and item.phase == "upload":
            return
        if not isinstance(item, FileProgress):
            super().__call__(item)
            return
        share = f" ({100 * item.total_done / item.total:.0f}%)" if item.total else ""
        whole = f"{decimal(item.total_done)} of {decimal(item.total)}{share}"
        if item.state != "sending":
            self.line(f"  {item.path}: {item.state}; upload {whole}")
            return
        now = time.monotonic()
        if item.done == 0:
            self._last_sending = now
            self.line(f"  {item.path}: sending {decimal(item.size)}")
        elif now - self._last_sending > SENDING_LINE_SECONDS:
            self._last_sending = now
            self.line(f"  {item.path}: {decimal(item.done)} of {decimal(item.size)}; upload {whole}")


def run(arguments: argparse.Namespace) -> int:
    """Validate the folder and the name first (no token needed to learn they are wrong), then start and follow."""
    from heretic_tui.core.shipping.hub import (
        default_repo_name,
        hub_user_name,
        validate_model_folder,
        validate_repo_name,
    )
    from heretic_tui.core.shipping.upload_job import start_upload

    folder = Path(arguments.folder).expanduser() if arguments.folder else None
    if arguments.resume:
        if arguments.public:
            raise UserInputError("--public cannot be combined with --resume: the repository already exists with its "
                                 "visibility. Change it on the Hub (Settings of the repository).")
    elif folder is None:
        raise UserInputError("Name the model folder to upload (`heretic-tui upload FOLDER`), or continue an upload "
                             "with `heretic-tui upload --resume --run-dir RUN_DIR`.")
    else:
        validate_model_folder(folder)
    if arguments.repo:
        validate_repo_name(arguments.repo)
    settings = settings_from_arguments(arguments, resumed_config(arguments, "an upload"))
    repo = arguments.repo
    try:
        token = read_token(arguments)
        if repo is None and folder is not None and not arguments.resume:
            repo = default_repo_name(hub_user_name(token, settings=settings.hub), folder)
        handle = start_upload(folder, repo, private=not arguments.public, token=token, run_dir=run_dir_path(arguments),
                              resume=arguments.resume, settings=settings)
    except KeyboardInterrupt:
        progress_line("cancelled before the upload started; nothing was sent")
        return EXIT_CANCELLED
    job = handle.run.read_job().get("arguments") or {}
    visibility = "private" if job.get("private", True) else "public"
    progress_line(f"uploading {job.get('folder')} to {job.get('repo')} ({visibility}); run folder: {handle.run.path}")
    code, last = follow(handle, UploadPrinter())
    if code == EXIT_OK and isinstance(last, JobFinished):
        print(last.summary.get("url"))
    return code
