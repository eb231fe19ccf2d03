"""The flags several commands share, the checks of the paths they name, and the one place flags become settings.

Each shared flag (``--config``, ``--set``, ``--model``, ``--run-dir``, ``--resume``, ``--headless``, ``--trials``) is
defined here once, so it reads and behaves the same in every command, and :func:`check_paths` checks the run folder
and config file every command was given before the command starts, so a mistake in either is one paragraph with
exit code 2 whichever command it was given to. Precedence of settings, lowest first: defaults < config.toml <
``HERETIC_*`` environment < flags (``--set`` first, then the named flags), exactly as
:func:`heretic_tui.core.settings.load_settings` layers them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import (
    Settings,
    load_settings,
    overrides_from_text,
    parse_assignment,
    resolve_config_path,
)

FLAG_SETTINGS = {
    "model": "model.model",
    "good_prompts": "prompts.good_prompts",
    "bad_prompts": "prompts.bad_prompts",
    "good_eval_prompts": "prompts.good_eval_prompts",
    "bad_eval_prompts": "prompts.bad_eval_prompts",
    "system_prompt": "prompts.system_prompt",
    "trials": "optimization.trials",
    "seed": "optimization.seed",
    "warm_start": "optimization.warm_start_run",
}
"""CLI flag (argparse dest) -> setting key; every other setting is reachable with --set section.name=value."""

RUN_DIR_HELP = "run folder to create (default: a new dated folder in the runs folder, output.runs_directory)"


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (every setting of config.toml)")
    group.add_argument("--config", metavar="FILE",
                       help="config.toml to read (default: ./config.toml, then the user config folder)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any setting, e.g. --set optimization.trials=40 (repeatable)")


def add_model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="MODEL",
                        help="a local model folder, a Hugging Face hub id, 'demo', or a model exported from a run")


def add_trials_flag(parser: argparse.ArgumentParser, default: str = "optimization.trials") -> None:
    parser.add_argument("--trials", metavar="N", help=f"total number of trials (default: {default})")


def add_headless_flag(parser: argparse.ArgumentParser,
                      help: str = "no full-screen app: progress lines on stderr, the result on stdout") -> None:
    parser.add_argument("--headless", action="store_true", help=help)


def add_run_dir_flag(parser: argparse.ArgumentParser, help: str = RUN_DIR_HELP) -> None:
    parser.add_argument("--run-dir", metavar="DIR", help=help)


def add_resume_flags(parser: argparse.ArgumentParser, resume_help: str) -> None:
    """``--run-dir`` for a new run or the one to continue, and ``--resume`` itself."""
    add_run_dir_flag(parser, RUN_DIR_HELP + "; with --resume, the run to continue")
    parser.add_argument("--resume", action="store_true", help=resume_help)


def add_run_folder_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The positional ``RUN_DIR`` of commands that work on an existing run (attach, export)."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help=help)


def check_folder_path(text: str, what: str, fix: str) -> None:
    """A folder named on the command line or in a setting must be a folder, or a path one can be created at.

    Checked before any command starts, so a file passed as ``--run-dir`` (or ``RUN_DIR``, or as
    ``output.runs_directory``) is one paragraph naming it, never a traceback from deep inside the command.
    """
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{what} {path} is a file, not a folder. {fix}")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(
                    f"{what} {path} cannot be created: {parent} is a file, not a folder. Choose a path that does "
                    "not pass through a file."
                )
            break


def check_run_folder(text: str) -> None:
    check_folder_path(text, "The run folder", "Pass a new folder to create (it must not exist yet, or be empty), or "
                                              "the folder of an existing run to continue or open.")


def check_paths(arguments: argparse.Namespace) -> None:
    """The same checks for every command: the run folder it names and the config file it reads."""
    run_dir = getattr(arguments, "run_dir", None)
    if run_dir:
        check_run_folder(run_dir)
    if getattr(arguments, "config", None):
        resolve_config_path(arguments.config, os.environ)


def settings_from_arguments(arguments: argparse.Namespace, base_config: Path | None = None,
                            extra: dict[str, str] | None = None) -> Settings:
    """Defaults < config file < HERETIC_* environment < flags (--set first, then the named flags)."""
    texts: dict[str, str] = dict(extra or {})
    for assignment in getattr(arguments, "set", []) or []:
        key, value = parse_assignment(assignment)
        texts[key] = value
    for dest, key in FLAG_SETTINGS.items():
        value = getattr(arguments, dest, None)
        if value is not None:
            texts[key] = str(value)
    overrides = overrides_from_text(texts, origin="Command line")
    config = base_config or getattr(arguments, "config", None)
    settings = load_settings(config, overrides=overrides)
    if settings.output.runs_directory:
        check_folder_path(settings.output.runs_directory, "The runs folder (output.runs_directory)",
                          "Set output.runs_directory to a folder, or leave it empty for the user data folder.")
    return settings


def resumed_config(arguments: argparse.Namespace, description: str) -> Path | None:
    """With --resume, the run folder's own config.toml is the base the flags layer onto."""
    if not getattr(arguments, "resume", False):
        return None
    from heretic_tui.core.runs.run_directory import RunDirectory

    if not arguments.run_dir:
        raise UserInputError(f"--resume needs --run-dir pointing at the {description} run to continue.")
    if getattr(arguments, "config", None):
        raise UserInputError(
            f"--config {arguments.config} cannot be combined with --resume: a resumed run keeps the settings in its "
            "own config.toml. Change single settings with --set section.name=value, or start a new run with "
            "--config."
        )
    return RunDirectory.open(arguments.run_dir).config_path


def run_dir_path(arguments: argparse.Namespace) -> Path | None:
    return Path(arguments.run_dir).expanduser() if getattr(arguments, "run_dir", None) else None
