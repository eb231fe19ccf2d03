"""``heretic-tui upload``: send a model or adapter folder to the Hugging Face Hub.

The token is read from the environment, the cached login, one line of stdin (``--token-stdin``) or, only when a
person is at the terminal and ``--headless`` is not given, one hidden prompt; it is never printed or stored.
The URL goes to stdout and progress to stderr, so a script can capture the one without the other.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from heretic_tui.cli.arguments import add_headless_flag
from heretic_tui.cli.following import progress_line
from heretic_tui.core.errors import EXIT_OK, UserInputError

NAME = "upload"
HELP = "upload a model or adapter folder to the Hugging Face Hub"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="model or adapter folder to upload (config.json and weights, or an adapter)")
    parser.add_argument("--repo", help="repository id owner/name (default: <your user>/<folder name>-heretic)")
    parser.add_argument("--public", action="store_true", help="make the repository public (default: private)")
    parser.add_argument("--token-stdin", action="store_true",
                        help="read the token from the first line of stdin instead of HF_TOKEN or the cached login")
    add_headless_flag(parser, "never ask for anything; a missing token is an error")


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def read_token(arguments: argparse.Namespace) -> str:
    """The upload token: stdin when asked, else HF_TOKEN or the cached login, else one hidden prompt at a terminal.

    Headless (or without a terminal) a missing token is an error at once: there is nobody to answer a prompt, and
    asking again in a loop would hang a script.
    """
    from heretic_tui.core.shipping.hub import LOGIN_HELP, resolve_token

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


def run(arguments: argparse.Namespace) -> int:
    """Validate the folder and the name first (no token needed to learn they are wrong), then upload."""
    from heretic_tui.core.shipping.hub import (
        default_repo_name,
        hub_user_name,
        upload_model_folder,
        validate_model_folder,
        validate_repo_name,
    )

    folder = Path(arguments.folder).expanduser()
    validate_model_folder(folder)
    if arguments.repo:
        validate_repo_name(arguments.repo)
    token = read_token(arguments)
    repo = arguments.repo or default_repo_name(hub_user_name(token), folder)
    visibility = "public" if arguments.public else "private"
    progress_line(f"uploading {folder.resolve()} to {repo} ({visibility})")

    def report(path: str, done: int, total: int) -> None:
        share = f" ({100 * done / total:.0f}%)" if total else ""
        progress_line(f"  {path}: {_size(done)} of {_size(total)}{share}")

    url = upload_model_folder(folder, repo, private=not arguments.public, token=token, report=report)
    progress_line(f"done: {url}")
    print(url)
    return EXIT_OK
