"""``heretic-tui abliterate``: start (or resume, or extend) an abliteration run, then follow it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from heretic_tui.cli.arguments import add_headless_flag, add_settings_flags, resumed_config, settings_from_arguments
from heretic_tui.cli.following import follow_headless, launch_app
from heretic_tui.core.runs.events import JobFinished

NAME = "abliterate"
HELP = "find and remove the refusal direction of a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="local model folder, hub id, or 'demo'")
    parser.add_argument("--good-prompts", help="harmless prompts for the direction (source string)")
    parser.add_argument("--bad-prompts", help="harmful prompts for the direction (source string)")
    parser.add_argument("--good-eval-prompts", help="harmless prompts for KL divergence (source string)")
    parser.add_argument("--bad-eval-prompts", help="harmful prompts for counting refusals (source string)")
    parser.add_argument("--system-prompt", help="system prompt before every prompt")
    parser.add_argument("--trials", help="total number of trials")
    parser.add_argument("--seed", help="sampler seed")
    parser.add_argument("--run-dir", help="run folder to create (or, with --resume, to continue)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir (also: run more trials)")
    add_headless_flag(parser)
    add_settings_flags(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.abliteration.job import start_abliteration

    settings = settings_from_arguments(arguments, base_config=resumed_config(arguments, "abliteration"))
    handle = start_abliteration(settings, Path(arguments.run_dir) if arguments.run_dir else None, arguments.resume)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, last = follow_headless(handle)
    if isinstance(last, JobFinished):
        summary = last.summary
        print(f"report: {handle.run.report_path}", file=sys.stderr)
        if summary.get("chosen_trial") is not None:
            print(f"chosen trial {summary['chosen_trial']}: refusals {summary['refusals']}/{summary['total']} "
                  f"(baseline {summary['baseline_refusals']}/{summary['total']}), KL {summary['kl']:.4f}",
                  file=sys.stderr)
    return code
