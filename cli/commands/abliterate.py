"""``heretic-tui abliterate``: start (or resume, or extend) an abliteration run, then follow it."""

from __future__ import annotations

import argparse
import sys

from heretic_tui.cli.arguments import (
    add_headless_flag,
    add_model_flag,
    add_resume_flags,
    add_settings_flags,
    add_trials_flag,
    resumed_config,
    run_dir_path,
    settings_from_arguments,
)
from heretic_tui.cli.following import follow_headless, launch_app
from heretic_tui.core.runs.events import JobFinished

NAME = "abliterate"
HELP = "find and remove the refusal direction of a model"
DESCRIPTION = """\
Find the direction along which a model refuses and search (with Optuna) for the
ablation that removes the most refusals for the least change on harmless
prompts. Opens the live dashboard, or prints progress with --headless.
SRC is a prompt source: a text file, data.csv#column,
hf:owner/name@split#column, builtin:harmful@train, builtin:harmless@test,
or 'auto'."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_flag(parser)
    prompts = parser.add_argument_group("prompts")
    prompts.add_argument("--good-prompts", metavar="SRC", help="harmless prompts for the refusal direction")
    prompts.add_argument("--bad-prompts", metavar="SRC", help="harmful prompts for the refusal direction")
    prompts.add_argument("--good-eval-prompts", metavar="SRC", help="harmless prompts for the KL divergence")
    prompts.add_argument("--bad-eval-prompts", metavar="SRC", help="harmful prompts for counting refusals")
    prompts.add_argument("--system-prompt", metavar="TEXT", help="system prompt put before every prompt")
    add_trials_flag(parser)
    parser.add_argument("--seed", metavar="N", help="seed of the sampler (default: optimization.seed)")
    parser.add_argument("--warm-start", metavar="RUN",
                        help="run the Pareto-front trials of an earlier run first (optimization.warm_start_run)")
    add_resume_flags(parser, "continue the run in --run-dir where it stopped; on a finished run, run more trials "
                             "(up to --trials)")
    add_headless_flag(parser)
    add_settings_flags(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.abliteration.job import start_abliteration

    settings = settings_from_arguments(arguments, base_config=resumed_config(arguments, "abliteration"))
    handle = start_abliteration(settings, run_dir_path(arguments), arguments.resume)
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
