"""``heretic-tui abliterate``: start (or resume, or extend) an abliteration run, then follow it."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

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
from heretic_tui.cli.commands.attach import print_study_workers
from heretic_tui.cli.following import follow_headless, launch_app
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import JobFinished
from heretic_tui.core.runs.handle import JobHandle

NAME = "abliterate"
HELP = "find and remove the refusal direction of a model"
DESCRIPTION = """\
Find the direction along which a model refuses and search (with Optuna) for the
ablation that removes the most refusals for the least change on harmless
prompts. Opens the live dashboard, or prints progress with --headless.
SRC is a prompt source: a text file, data.csv#column,
hf:owner/name@split#column, builtin:harmful@train, builtin:harmless@test,
or 'auto'.

Several workers on one study: --storage postgresql://user@host/db keeps the
study in PostgreSQL; --join RUN_DIR (this box) or --join URL --study NAME
(another box) adds a worker to it; --gpus all starts one worker per GPU."""


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
    workers = parser.add_argument_group("several workers on one study")
    workers.add_argument("--storage", metavar="URL",
                         help="keep the study in this database (postgresql://user@host:5432/db) so other workers can "
                              "join it; the password goes in PGPASSWORD or ~/.pgpass, never in the URL")
    workers.add_argument("--study", metavar="NAME",
                         help="the study's name in --storage or --join URL (default for a new run: its folder name)")
    workers.add_argument("--join", metavar="RUN_DIR|URL",
                         help="start one more worker on the study of the run in RUN_DIR, or on study --study NAME in "
                              "the database at URL (another box)")
    workers.add_argument("--gpus", metavar="all", choices=("all",),
                         help="start one worker per visible GPU on one study (needs --storage)")
    add_headless_flag(parser)
    add_settings_flags(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.abliteration.job import start_abliteration
    from heretic_tui.core.abliteration import shared_runs

    _check_combination(arguments)
    if arguments.join:
        handle = _join(arguments)
    else:
        settings = settings_from_arguments(arguments, base_config=resumed_config(arguments, "abliteration"))
        if arguments.gpus:
            handles = shared_runs.start_per_gpu(settings, arguments.storage, arguments.study, run_dir_path(arguments))
            handle = handles[0]
            for other in handles[1:]:
                print(f"worker on another GPU: {other.run.path}", file=sys.stderr)
        elif arguments.storage:
            handle = shared_runs.start_shared_run(settings, arguments.storage, arguments.study,
                                                  run_dir_path(arguments))
        if arguments.gpus or arguments.storage:
            _print_join_commands(handle)
        else:
            handle = start_abliteration(settings, run_dir_path(arguments), arguments.resume)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, last = follow_headless(handle)
    if code == 0:
        print_study_workers(handle.run.path)
    if isinstance(last, JobFinished):
        summary = last.summary
        print(f"report: {handle.run.report_path}", file=sys.stderr)
        if summary.get("chosen_trial") is not None:
            print(f"chosen trial {summary['chosen_trial']}: refusals {summary['refusals']}/{summary['total']} "
                  f"(baseline {summary['baseline_refusals']}/{summary['total']}), KL {summary['kl']:.4f}",
                  file=sys.stderr)
    return code


def _check_combination(arguments: argparse.Namespace) -> None:
    """Flags of several workers that cannot go together, each refused with what to do instead."""
    if arguments.resume and (arguments.storage or arguments.join or arguments.gpus):
        raise UserInputError(
            "--resume continues a run with the study it already has; it cannot be combined with --storage, --join "
            "or --gpus. Resume with `heretic-tui abliterate --resume --run-dir RUN_DIR` (a worker folder inside "
            "RUN_DIR/workers resumes the same way)."
        )
    if arguments.join and (arguments.storage or arguments.gpus):
        raise UserInputError(
            "--join adds a worker to a study that exists; --storage and --gpus start a new one. Use --join RUN_DIR "
            "(or --join URL --study NAME) alone, and run it once per extra GPU with CUDA_VISIBLE_DEVICES set."
        )
    if arguments.join and arguments.trials:
        raise UserInputError(
            f"--trials {arguments.trials} cannot be combined with --join: the study's target is the one its run was "
            "started with. To run more trials, resume the run itself with --trials; joined workers follow it."
        )
    if arguments.study and not (arguments.storage or arguments.join):
        raise UserInputError(
            f"--study {arguments.study} names a study in a database; give the database with --storage URL (a new "
            "run) or --join URL (a worker on another box)."
        )


def _join(arguments: argparse.Namespace) -> JobHandle:
    """A worker on an existing study: of the run in a local folder, or by database URL and study name."""
    from heretic_tui.core.abliteration import shared_runs
    from heretic_tui.core.abliteration.study_storage import StudyLocation, check_storage_url, stored_config
    from heretic_tui.core.runs.run_directory import RunDirectory

    target = arguments.join
    if arguments.config:
        raise UserInputError(
            f"--config {arguments.config} cannot be combined with --join {target}: a joined worker uses the settings "
            "the study was started with. Change single settings with --set section.name=value."
        )
    if "://" not in target:
        if arguments.run_dir:
            raise UserInputError(
                f"--run-dir cannot be combined with --join {target}: a worker joining a run on this box gets its "
                f"folder inside {target}/workers."
            )
        run = RunDirectory.open(target)
        kind = run.read_job().get("kind")
        if kind != "abliterate":
            raise UserInputError(f"{run.path} is a '{kind}' run, not an abliteration run, so it cannot be joined.")
        settings = settings_from_arguments(arguments, base_config=run.config_path)
        return shared_runs.join_run(settings, run)
    if not arguments.study:
        raise UserInputError(
            f"--join {target} names a database; add --study NAME, the study's name that the run which started it "
            "printed (its run folder's name unless it was given --study)."
        )
    check_storage_url(target, "--join")
    location = StudyLocation(target, arguments.study)
    config = stored_config(location)
    with tempfile.TemporaryDirectory(prefix="heretic-join-") as folder:
        config_path = Path(folder) / "config.toml"
        config_path.write_text(config, encoding="utf-8")
        settings = settings_from_arguments(arguments, base_config=config_path)
    return shared_runs.join_study(settings, location, run_dir_path(arguments))


def _print_join_commands(handle: JobHandle) -> None:
    """How to add workers to the study just started: on this box, and on another that reaches the database."""
    from heretic_tui.core.abliteration.study_storage import location_of_run, redacted

    location = location_of_run(handle.run.path)
    print(f"{location.describe()}: add a worker with `heretic-tui abliterate --join {handle.run.path}` on this box, "
          f"or `heretic-tui abliterate --join {redacted(location.url or '')} --study {location.name}` on another",
          file=sys.stderr)
