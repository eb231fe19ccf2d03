"""The headless commands that get models out the door: ``upload``, ``compare`` and ``registry``.

They are wired into :mod:`heretic_tui.cli.main` the way ``finetune`` is: the CLI adds the sub-parsers and hands the parsed
arguments to :func:`run_command`, passing in its own helpers (settings layering, event following, progress printing,
the app launcher) so this module needs nothing from the CLI at import time. Results go to stdout (a URL, a path, a
table) and progress to stderr, so a script can capture the one without the other.

The upload token is read from the environment, the cached login, one line of stdin (``--token-stdin``) or, only when
a person is at the terminal and ``--headless`` is not given, one hidden prompt; it is never printed or stored.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import EXIT_OK, UserInputError
from heretic_tui.core.runs.events import Event, JobFinished

SettingsBuilder = Callable[..., Any]
Follower = Callable[[Any, Callable[[Event], None]], tuple[int, Event | None]]
REGISTRY_ACTIONS = ("rebuild", "runs", "models", "lineage", "comparisons")


def add_upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="model or adapter folder to upload (config.json and weights, or an adapter)")
    parser.add_argument("--repo", help="repository id owner/name (default: <your user>/<folder name>-heretic)")
    parser.add_argument("--public", action="store_true", help="make the repository public (default: private)")
    parser.add_argument("--token-stdin", action="store_true",
                        help="read the token from the first line of stdin instead of HF_TOKEN or the cached login")
    parser.add_argument("--headless", action="store_true", help="never ask for anything; a missing token is an error")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="two or three models: folders, hub ids, 'demo', adapter folders or RUN_DIR#TRIAL; "
                             "KL divergence is measured against the first")
    parser.add_argument("--prompts", required=True,
                        help="prompt source, e.g. builtin:harmful@test or a text file with one prompt per line")
    parser.add_argument("--max-new-tokens", type=int,
                        help="longest greedy answer per prompt, in tokens (default: a short paragraph's worth)")
    parser.add_argument("--held-out", help="prompt source whose texts measure perplexity (default: built-in prose)")
    parser.add_argument("--run-dir", help="run folder to create for the comparison")
    parser.add_argument("--headless", action="store_true", help="no full-screen app: progress lines on stderr")


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    from heretic_tui.core.runs.registry import ROLES

    actions = parser.add_subparsers(dest="registry_action", required=True, metavar="ACTION")
    actions.add_parser("rebuild", help="re-index every run folder and model folder")
    actions.add_parser("runs", help="list indexed runs (a deleted folder shows as missing)")
    models = actions.add_parser("models", help="list indexed models")
    models.add_argument("--role", choices=ROLES, help="only models of this role")
    lineage = actions.add_parser("lineage", help="the chain base -> abliterated -> fine-tuned of a model")
    lineage.add_argument("path", help="model folder (or hub id)")
    actions.add_parser("comparisons", help="list saved comparisons")


def run_command(
    arguments: argparse.Namespace,
    settings_from_arguments: SettingsBuilder,
    follow: Follower,
    progress_printer: Callable[[Any], Callable[[Event], None]],
    launch_app: Callable[..., int],
) -> int:
    """Run ``upload``, ``compare`` or ``registry`` with the CLI's own helpers."""
    if arguments.command == "upload":
        return run_upload(arguments)
    if arguments.command == "compare":
        return run_compare(arguments, settings_from_arguments, follow, progress_printer, launch_app)
    if arguments.command == "registry":
        return run_registry(arguments, settings_from_arguments)
    raise UserInputError(f"Unknown command {arguments.command!r}.")


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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


def run_upload(arguments: argparse.Namespace) -> int:
    """Validate the folder and the name first (no token needed to learn they are wrong), then upload."""
    from heretic_tui.core.shipping.hub import default_repo_name, hub_user_name, upload_model_folder, validate_model_folder, validate_repo_name

    folder = Path(arguments.folder).expanduser()
    validate_model_folder(folder)
    if arguments.repo:
        validate_repo_name(arguments.repo)
    token = read_token(arguments)
    repo = arguments.repo or default_repo_name(hub_user_name(token), folder)
    visibility = "public" if arguments.public else "private"
    _progress(f"uploading {folder.resolve()} to {repo} ({visibility})")

    def report(path: str, done: int, total: int) -> None:
        share = f" ({100 * done / total:.0f}%)" if total else ""
        _progress(f"  {path}: {_size(done)} of {_size(total)}{share}")

    url = upload_model_folder(folder, repo, private=not arguments.public, token=token, report=report)
    _progress(f"done: {url}")
    print(url)
    return EXIT_OK


def run_compare(
    arguments: argparse.Namespace,
    settings_from_arguments: SettingsBuilder,
    follow: Follower,
    progress_printer: Callable[[Any], Callable[[Event], None]],
    launch_app: Callable[..., int],
) -> int:
    from heretic_tui.core.shipping.compare import DEFAULT_MAX_NEW_TOKENS, start_compare

    settings = settings_from_arguments(arguments)
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS if arguments.max_new_tokens is None else arguments.max_new_tokens
    handle = start_compare(arguments.models, arguments.prompts, settings, arguments.run_dir,
                           max_new_tokens=max_new_tokens, held_out=arguments.held_out)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    _progress(f"run folder: {handle.run.path}")
    code, last = follow(handle, progress_printer(sys.stderr))
    if isinstance(last, JobFinished):
        for number, model in enumerate(last.summary.get("models", []), 1):
            kl = model.get("kl_vs_first")
            perplexity = model.get("perplexity")
            _progress(
                f"{number}. {model['label']}: refusals {model['refusals']}/{model['total']}, KL vs model 1 "
                f"{'n/a (different tokenizer)' if kl is None else f'{kl:.4f}'}, perplexity "
                f"{'n/a' if perplexity is None else f'{perplexity:.2f}'}"
            )
        _progress(f"comparison: {last.summary.get('markdown')}")
        print(last.summary.get("markdown"))
    return code


def _when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created))


def run_registry(arguments: argparse.Namespace, settings_from_arguments: SettingsBuilder) -> int:
    from heretic_tui.core.runs.jobs import runs_root
    from heretic_tui.core.runs.registry import Registry

    registry = Registry()
    action = arguments.registry_action
    if action == "rebuild":
        settings = settings_from_arguments(arguments)
        root = runs_root(settings)
        _progress(f"indexing runs under {root}")
        registry.rebuild(root, [Path(folder) for folder in settings.output.model_directories])
        _progress(f"registry {registry.path}: {len(registry.list_runs())} runs, {len(registry.list_models())} "
                  f"models, {len(registry.list_comparisons())} comparisons")
    elif action == "runs":
        for run in registry.list_runs():
            print(f"{run.status:10s} {run.kind:10s} {_when(run.created)}  {run.model:30s} {run.path}")
    elif action == "models":
        for model in registry.list_models(arguments.role):
            parent = f"  <- {model.parent_path}" if model.parent_path else ""
            print(f"{model.role:12s} {model.status:10s} {model.path}{parent}")
    elif action == "lineage":
        chain = registry.lineage(arguments.path)
        if not chain:
            raise UserInputError(
                f"{arguments.path} is not in the registry. Run `heretic-tui registry rebuild` to index the run "
                "folders, or check the path with `heretic-tui registry models`."
            )
        for depth, model in enumerate(chain):
            origin = f" (run {model.run_path}, trial {model.trial})" if model.trial is not None else ""
            arrow = "  " * depth + ("-> " if depth else "")
            print(f"{arrow}{model.role}: {model.path} [{model.status}]{origin}")
    else:
        for comparison in registry.list_comparisons():
            print(f"{comparison.id:4d} {_when(comparison.created)}  {comparison.prompts_source:28s} "
                  f"{' | '.join(comparison.models)}  -> {comparison.result_path}")
    return EXIT_OK
