"""``heretic-tui attach``: reopen the dashboard of a live or finished run, or follow it on stderr."""

from __future__ import annotations

import argparse
from pathlib import Path

from heretic_tui.cli.arguments import add_headless_flag, add_run_folder_argument
from heretic_tui.cli.following import follow, launch_app, progress_line, ProgressPrinter
from heretic_tui.core.errors import HereticError

NAME = "attach"
HELP = "open the dashboard of a live or finished run"
DESCRIPTION = """\
Open the dashboard of a run, live or finished: everything it shows is rebuilt
from the run folder, then followed while the worker runs. With --headless the
run's events are replayed and followed on stderr, and the exit code is the
run's own. A run whose study several workers share ends with every worker's
count of trials and speed, read from the study's database."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_folder_argument(parser, "the run folder (printed when the run started; see `heretic-tui runs`)")
    add_headless_flag(parser, "replay and follow the run's events on stderr instead of opening the dashboard")


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.runs.handle import attach

    handle = attach(arguments.run_dir)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, _ = follow(handle, ProgressPrinter())
    print_study_workers(handle.run.path)
    return code


def print_study_workers(run_path: Path) -> None:
    """For a run whose study several workers share: the whole study's trials and each worker's speed (stderr)."""
    from heretic_tui.core.abliteration.study_view import SharedStudyReader

    reader = SharedStudyReader(run_path)
    if not reader.shared:
        return
    try:
        snapshot = reader.read()
    except HereticError as error:
        progress_line(f"the shared study could not be read: {error}")
        return
    running = sum(1 for trial in snapshot.trials if trial.running)
    progress_line(f"shared study ({reader.location.describe()}): {len(snapshot.trials) - running} trials complete, "
                  f"{running} running, by {len(snapshot.workers)} worker{'s' if len(snapshot.workers) != 1 else ''}")
    for speed in snapshot.workers:
        progress_line(f"  {speed.describe()}")
