"""``heretic-tui demo``: build the demo model once, abliterate it end to end offline, export the chosen trial."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from heretic_tui.cli.arguments import add_headless_flag, add_settings_flags, settings_from_arguments
from heretic_tui.cli.following import follow_headless
from heretic_tui.core.runs.events import JobFinished

NAME = "demo"
HELP = "build the demo model (once) and abliterate it end to end, offline"
DEMO_TRIALS = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", help=f"number of trials (default {DEMO_TRIALS})")
    parser.add_argument("--run-dir", help="run folder to create")
    add_headless_flag(parser, "accepted for symmetry; the demo prints to stderr")
    add_settings_flags(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.abliteration.job import start_abliteration

    extra = {"model.model": "demo", "optimization.trials": str(arguments.trials or DEMO_TRIALS),
             "optimization.startup_trials": "15"}
    settings = settings_from_arguments(arguments, extra=extra)
    settings.model.model = "demo"
    handle = start_abliteration(settings, Path(arguments.run_dir) if arguments.run_dir else None, export_chosen=True)
    code, last = follow_headless(handle)
    if isinstance(last, JobFinished) and last.summary.get("chosen_trial") is not None:
        summary = last.summary
        total = summary["total"]
        print(
            f"\nDemo finished.\n"
            f"  before: {summary['baseline_refusals']}/{total} harmful prompts refused\n"
            f"  after:  {summary['refusals']}/{total} refused with trial {summary['chosen_trial']} "
            f"(KL divergence {summary['kl']:.4f} on harmless prompts)\n"
            f"  exported model: {summary.get('export')}\n"
            f"  report: {handle.run.report_path}",
            file=sys.stderr,
        )
    return code
