"""``heretic-tui attach``: reopen the dashboard of a live or finished run, or follow it on stderr."""

from __future__ import annotations

import argparse

from heretic_tui.cli.arguments import add_headless_flag
from heretic_tui.cli.following import follow, launch_app, ProgressPrinter

NAME = "attach"
HELP = "open the dashboard of a live or finished run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    add_headless_flag(parser, "replay and follow the run's events on stderr")


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.runs.handle import attach

    handle = attach(arguments.run_dir)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, _ = follow(handle, ProgressPrinter())
    return code
