"""``heretic-tui export``: write one trial of an abliteration run as a model folder or a LoRA adapter."""

from __future__ import annotations

import argparse
from pathlib import Path

from heretic_tui.cli.arguments import add_headless_flag, add_run_folder_argument
from heretic_tui.cli.following import follow_headless
from heretic_tui.core.errors import EXIT_OK

NAME = "export"
HELP = "write a trial of a run as a model folder or LoRA adapter"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_folder_argument(parser, "the abliteration run folder")
    parser.add_argument("--trial", type=int, required=True, help="trial number (see report.json 'pareto')")
    parser.add_argument("--output", required=True, help="folder to create")
    parser.add_argument("--adapter", action="store_true", help="write a LoRA adapter instead of merged weights")
    add_headless_flag(parser, "accepted for symmetry; export is always headless")


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.shipping.export import start_export

    handle = start_export(arguments.run_dir, arguments.trial, arguments.output, arguments.adapter)
    code, _ = follow_headless(handle)
    if code == EXIT_OK:
        print(Path(arguments.output).expanduser().resolve())
    return code
