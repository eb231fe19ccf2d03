"""The settings flags every command shares, and the one place flags become settings.

Precedence, lowest first: defaults < config.toml < ``HERETIC_*`` environment < flags (``--set`` first, then the
named flags), exactly as :func:`heretic_tui.core.settings.load_settings` layers them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from heretic_tui.core.settings import Settings, load_settings, overrides_from_text, parse_assignment

FLAG_SETTINGS = {
    "model": "model.model",
    "good_prompts": "prompts.good_prompts",
    "bad_prompts": "prompts.bad_prompts",
    "good_eval_prompts": "prompts.good_eval_prompts",
    "bad_eval_prompts": "prompts.bad_eval_prompts",
    "system_prompt": "prompts.system_prompt",
    "trials": "optimization.trials",
    "seed": "optimization.seed",
}
"""CLI flag (argparse dest) -> setting key; every other setting is reachable with --set section.name=value."""


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config.toml to read (default: ./config.toml, then the user config folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting, e.g. --set optimization.startup_trials=10 (repeatable)")


def add_headless_flag(parser: argparse.ArgumentParser, help: str = "no full-screen app: progress lines on stderr") -> None:
    parser.add_argument("--headless", action="store_true", help=help)


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
    return load_settings(config, overrides=overrides)


def resumed_config(arguments: argparse.Namespace, description: str) -> Path | None:
    """With --resume, the run folder's own config.toml is the base the flags layer onto."""
    if not getattr(arguments, "resume", False):
        return None
    from heretic_tui.core.errors import UserInputError
    from heretic_tui.core.runs.run_directory import RunDirectory

    if not arguments.run_dir:
        raise UserInputError(f"--resume needs --run-dir pointing at the {description} run to continue.")
    return RunDirectory.open(arguments.run_dir).config_path
