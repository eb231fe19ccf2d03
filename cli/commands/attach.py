"""``heretic-tui attach``: reopen the dashboard of a live or finished run, or follow it on stderr."""

from __future__ import annotations

import argparse

from heretic_tui.cli.arguments import add_headless_flag, add_run_folder_argument
from heretic_tui.cli.following import follow, launch_app, ProgressPrinter

NAME = "attach"
HELP = "open the dashboard of a live or finished run"
DESCRIPTION = """\
Open the dashboard of a run, live or finished: everything it shows is rebuilt
from the run folder, then followed while the worker runs. With --headless the
run's events are replayed and followed on stderr, and the exit code is the
run's own."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_folder_argument(parser, "the run folder (printed when the run started; see `heretic-tui runs`)")
    add_headless_flag(parser, "replay and follow the run's events on stderr instead of opening the dashboard")


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.runs.handle import attach

    handle = attach(arguments.run_dir)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, _ = follow(handle, ProgressPrinter())
    return code
