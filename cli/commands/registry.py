"""``heretic-tui registry``: the index of runs, models (with lineage) and comparisons."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from heretic_tui.cli.arguments import add_settings_flags, settings_from_arguments
from heretic_tui.cli.following import progress_line
from heretic_tui.core.errors import EXIT_OK, UserInputError

NAME = "registry"
HELP = "the index of runs, models (with lineage) and comparisons"
DESCRIPTION = """\
The SQLite index of runs, models (with their lineage base -> abliterated ->
fine-tuned) and comparisons. The run folders stay the source of truth:
`registry rebuild` re-creates the index from them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from heretic_tui.core.runs.registry import ROLES

    add_settings_flags(parser)
    actions = parser.add_subparsers(dest="registry_action", required=True, title="actions")
    actions.add_parser("rebuild", help="re-index every run folder and model folder")
    actions.add_parser("runs", help="list indexed runs (a deleted folder shows as missing)")
    models = actions.add_parser("models", help="list indexed models")
    models.add_argument("--role", choices=ROLES, help="only models of this role")
    lineage = actions.add_parser("lineage", help="the chain base -> abliterated -> fine-tuned of a model")
    lineage.add_argument("path", help="model folder (or hub id)")
    actions.add_parser("comparisons", help="list saved comparisons")


def _when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created))


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.runs.run_directory import runs_root
    from heretic_tui.core.runs.registry import Registry

    registry = Registry()
    action = arguments.registry_action
    if action == "rebuild":
        settings = settings_from_arguments(arguments)
        root = runs_root(settings)
        progress_line(f"indexing runs under {root}")
        registry.rebuild(root, [Path(folder) for folder in settings.output.model_directories])
        progress_line(f"registry {registry.path}: {len(registry.list_runs())} runs, {len(registry.list_models())} "
                      f"models, {len(registry.list_comparisons())} comparisons")
    elif action == "runs":
        for run_record in registry.list_runs():
            print(f"{run_record.status:10s} {run_record.kind:10s} {_when(run_record.created)}  "
                  f"{run_record.model:30s} {run_record.path}")
    elif action == "models":
        for model in registry.list_models(arguments.role):
            parent = f"  <- {model.parent_path}" if model.parent_path else ""
            print(f"{model.role:12s} {model.status:10s} {model.path}{parent}")
    elif action == "lineage":
        chain = registry.lineage(arguments.path)
        if not chain:
            raise UserInputError(
                f"{arguments.path} is not in the registry. Run `heretic-tui registry rebuild` to index the run "
                "folders, or check the path with `heretic-tui registry models`."
            )
        for depth, model in enumerate(chain):
            origin = f" (run {model.run_path}, trial {model.trial})" if model.trial is not None else ""
            arrow = "  " * depth + ("-> " if depth else "")
            print(f"{arrow}{model.role}: {model.path} [{model.status}]{origin}")
    else:
        for comparison in registry.list_comparisons():
            print(f"{comparison.id:4d} {_when(comparison.created)}  {comparison.prompts_source:28s} "
                  f"{' | '.join(comparison.models)}  -> {comparison.result_path}")
    return EXIT_OK
