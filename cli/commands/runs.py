"""``heretic-tui runs``: every run folder with its status, kind and model."""

from __future__ import annotations

import argparse

from heretic_tui.cli.arguments import add_settings_flags, settings_from_arguments
from heretic_tui.core.errors import EXIT_OK

NAME = "runs"
HELP = "list runs with their status"
DESCRIPTION = """\
List every run folder in the runs folder (output.runs_directory) with its status
(running, finished, failed, cancelled, damaged), kind and model."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.runs.run_directory import list_runs, runs_root

    settings = settings_from_arguments(arguments)
    for run_directory in list_runs(runs_root(settings)):
        job = run_directory.read_job()
        print(f"{run_directory.status():10s} {str(job.get('kind', '?')):11s} {str(job.get('model', '?')):30s} "
              f"{run_directory.path}")
        damage = run_directory.damage()
        if damage:
            print(f"           {damage}")
    return EXIT_OK
