"""``heretic-tui evaluate``: lm-evaluation-harness tasks on a model, a run's trial or an export, offline."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from heretic_tui.cli.arguments import add_settings_flags, settings_from_arguments
from heretic_tui.cli.following import progress_line
from heretic_tui.core.errors import EXIT_CANCELLED, EXIT_OK, UserInputError

NAME = "evaluate"
HELP = "lm-eval tasks on a model, a trial or an export, offline (eval extra)"
DESCRIPTION = """\
Run lm-evaluation-harness tasks (pip install 'heretic-tui[eval]') on a model
and on the original it came from: a run's trial (RUN_DIR --trial N, or
RUN_DIR#N) is measured on the run's model without and with its edit, an export
beside its source model. It never downloads: a task's data must be local (a
task YAML with dataset_path: json, in a folder given with --include-path) or
already in the datasets cache. Results go into the run's report.json and
evaluation.json, or an export's heretic.json and model card; the table is
printed on stdout."""


def _whole_number(lowest: int) -> Callable[[str], int]:
    """An argparse type for a whole number of at least ``lowest`` (--limit, --batch-size: 1; --num-fewshot: 0)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lowest:
            bound = "0 or more" if lowest == 0 else f"at least {lowest}"
            raise argparse.ArgumentTypeError(f"expected {bound}, got {value}")
        return value

    return parse


_positive = _whole_number(1)
_shots = _whole_number(0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_reference", metavar="MODEL",
                        help="a model folder, an export, a hub id (cached), 'demo', a run folder with --trial, "
                             "or RUN_DIR#TRIAL")
    parser.add_argument("--trial", type=int, metavar="N", help="the trial of the run folder MODEL to evaluate")
    parser.add_argument("--tasks", action="append", required=True, metavar="TASKS",
                        help="lm-eval task names or task YAML files, comma-separated (repeatable)")
    parser.add_argument("--include-path", action="append", default=[], metavar="DIR",
                        help="a folder of your own task YAML files (repeatable)")
    parser.add_argument("--limit", type=_positive, metavar="N", help="at most N examples per task (default: all)")
    parser.add_argument("--num-fewshot", type=_shots, metavar="N",
                        help="examples shown before each question (default: each task's own)")
    parser.add_argument("--batch-size", type=_positive, metavar="N",
                        help="requests per forward pass (default: model.batch_size, or lm-eval's automatic search "
                             "up to model.max_batch_size when that is 0)")
    parser.add_argument("--skip-original", action="store_true",
                        help="measure only MODEL, not the original it came from")
    add_settings_flags(parser)


def _figure(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("n/a" if value is None else str(value))


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.capability.harness import (
        AUTOMATIC_BATCH_SIZE,
        HarnessRequest,
        check_include_paths,
        parse_task_names,
        result_rows,
    )
    from heretic_tui.core.capability.model_evaluation import evaluate

    settings = settings_from_arguments(arguments)
    tasks = tuple(dict.fromkeys(name for text in arguments.tasks for name in parse_task_names(text)))
    if arguments.trial is not None and arguments.trial < 0:
        raise UserInputError(f"--trial {arguments.trial} is not a trial number; trials count from 0.")
    batch_size = arguments.batch_size or settings.model.batch_size or AUTOMATIC_BATCH_SIZE
    request = HarnessRequest(tasks, check_include_paths(arguments.include_path), arguments.limit,
                             arguments.num_fewshot, batch_size, settings.model.max_batch_size)
    try:
        outcome = evaluate(arguments.model_reference, arguments.trial, request, settings,
                           skip_original=arguments.skip_original, log=progress_line)
    except KeyboardInterrupt:
        progress_line("cancelled: nothing was recorded (results are written only once every model has run)")
        return EXIT_CANCELLED
    for path in outcome.written:
        progress_line(f"results written to {path}")
    for note in outcome.notes:
        progress_line(f"note: {note}")
    original_column = "original" if outcome.original is not None else None
    header = ["task", "metric", *([original_column] if original_column else []), outcome.label, "stderr"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for task, metric, before, value, error in result_rows(outcome.original, outcome.results):
        cells = [task, metric, *([_figure(before)] if original_column else []), _figure(value), _figure(error)]
        print("| " + " | ".join(cells) + " |")
    return EXIT_OK
