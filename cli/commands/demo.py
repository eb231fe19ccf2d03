"""``heretic-tui demo``: build the demo model once, abliterate it end to end offline, export the chosen trial."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from heretic_tui.cli.arguments import (
    add_headless_flag,
    add_run_dir_flag,
    add_settings_flags,
    add_trials_flag,
    run_dir_path,
    settings_from_arguments,
)
from heretic_tui.cli.following import follow_headless
from heretic_tui.core.runs.events import JobFinished

NAME = "demo"
HELP = "build the demo model (once) and abliterate it end to end, offline"
DESCRIPTION = """\
Build the small offline demo model (once, cached), abliterate it with the
built-in prompts and export the chosen trial. Needs no network and no GPU;
progress goes to stderr. A way to see every step of a run in a few minutes."""
DEMO_TRIALS = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trials_flag(parser, str(DEMO_TRIALS))
    add_run_dir_flag(parser)
    add_headless_flag(parser, "accepted for symmetry: the demo always prints its progress to stderr")
    add_settings_flags(parser)


def scorer_lines(run_path: Path, trial: int) -> str:
    """How the chosen trial's responses were judged and how far the scorer agrees with the person's labels."""
    from heretic_tui.core.api import Verdict, run_scorer, scorer_agreement, trial_responses

    scorer = run_scorer(run_path)
    judged = trial_responses(run_path, trial)
    tally = {verdict: sum(1 for item in judged if item.verdict is verdict) for verdict in Verdict}
    return (f"scorer: {scorer} (trial {trial}: {tally[Verdict.REFUSED]} refused, {tally[Verdict.EVASIVE]} complied "
            f"without answering, {tally[Verdict.ANSWERED]} answered); {scorer_agreement(run_path).sentence(scorer)} "
            "(label responses in the TUI: trial actions, r)")


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.abliteration.job import start_abliteration

    extra = {"model.model": "demo", "optimization.trials": str(arguments.trials or DEMO_TRIALS)}
    settings = settings_from_arguments(arguments, extra=extra)
    settings.model.model = "demo"
    handle = start_abliteration(settings, run_dir_path(arguments), export_chosen=True)
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
            f"  report: {handle.run.report_path}\n"
            f"  {scorer_lines(handle.run.path, summary['chosen_trial'])}",
            file=sys.stderr,
        )
    return code
