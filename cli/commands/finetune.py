"""``heretic-tui finetune``: the flags, and the command that starts (or resumes) a run and follows it.

Named flags are shortcuts for the common settings; every other fine-tuning setting is reachable with
``--set finetune.<name>=<value>`` like any other setting, so the CLI never has options the config file lacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from heretic_tui.cli.arguments import (
    add_headless_flag,
    add_model_flag,
    add_resume_flags,
    add_settings_flags,
    resumed_config,
    run_dir_path,
    settings_from_arguments,
)
from heretic_tui.cli.following import follow_headless, launch_app
from heretic_tui.core.finetuning.sources import HUB_PREFIX
from heretic_tui.core.runs.events import JobFinished

NAME = "finetune"
HELP = "train a LoRA/QLoRA adapter on documents or chat data"
DESCRIPTION = """\
Train a LoRA (or DoRA, or QLoRA on CUDA) adapter on PDFs, text and Markdown
files, folders, JSONL chat/instruction/text rows or hf: datasets. The plan
(examples, steps, memory) is shown before the first step and flags a schedule
that cannot learn; checkpoints make the run resumable; the adapter (and with
--merge a full model) is written into the run folder with report.json."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_flag(parser)
    parser.add_argument("--data", action="append", metavar="PATH",
                        help="training data: a file (.pdf .txt .md .jsonl .json), a folder, or "
                             "hf:owner/name@split#column (repeatable)")
    parser.add_argument("--mode", choices=("auto", "text", "instruct", "chat"),
                        help="text (continued pretraining), instruct (pairs), chat (conversations); default auto")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", metavar="N", help="passes over the training examples")
    length.add_argument("--max-steps", metavar="N", help="optimizer steps to train for (instead of epochs)")
    parser.add_argument("--lora-rank", metavar="R", help="rank of the LoRA matrices")
    parser.add_argument("--learning-rate", metavar="LR", help="peak learning rate")
    parser.add_argument("--merge", action="store_true", help="also write the merged full model (RUN_DIR/merged)")
    add_resume_flags(parser, "continue the run in --run-dir from its last checkpoint")
    add_headless_flag(parser)
    add_settings_flags(parser)


def _data_entry(entry: str) -> str:
    """Paths become absolute so the run folder's config.toml still works from another directory (and on resume)."""
    if entry.strip().startswith(HUB_PREFIX):
        return entry.strip()
    return str(Path(entry).expanduser().resolve())


def setting_overrides(arguments: argparse.Namespace) -> dict[str, str]:
    """The named flags as ``section.name`` -> text overrides (validated by the settings loader)."""
    overrides: dict[str, str] = {}
    if arguments.data:
        overrides["finetune.training_data"] = json.dumps([_data_entry(entry) for entry in arguments.data])
    if arguments.mode:
        overrides["finetune.training_mode"] = arguments.mode
    if arguments.epochs is not None:
        overrides["finetune.epochs"] = arguments.epochs
        overrides["finetune.max_steps"] = "0"
    if arguments.max_steps is not None:
        overrides["finetune.max_steps"] = arguments.max_steps
    if arguments.lora_rank is not None:
        overrides["finetune.lora_rank"] = arguments.lora_rank
    if arguments.learning_rate is not None:
        overrides["finetune.learning_rate"] = arguments.learning_rate
    if arguments.merge:
        overrides["finetune.merge_adapter"] = "true"
    return overrides


def _print_summary(summary: dict[str, Any], report_path: Path) -> None:
    def figure(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    lines = [
        f"eval loss {figure(summary.get('eval_loss_before'))} -> {figure(summary.get('eval_loss_after'))}, "
        f"perplexity {figure(summary.get('perplexity_before'))} -> {figure(summary.get('perplexity_after'))}, "
        f"train loss {figure(summary.get('train_loss'))}",
        f"examples: {summary.get('examples', {}).get('train')} train, "
        f"{summary.get('examples', {}).get('validation')} validation",
        f"adapter: {summary.get('adapter_dir')}",
    ]
    if summary.get("merged_dir"):
        lines.append(f"merged model: {summary['merged_dir']}")
    lines.append(f"report: {report_path}")
    warnings = summary.get("warnings") or []
    if warnings:
        lines.append(f"finished with {len(warnings)} warning{'s' if len(warnings) != 1 else ''} "
                     "(report.json 'warnings'):")
        lines += [f"  - {warning}" for warning in warnings]
    print("\n".join(lines), file=sys.stderr, flush=True)


def run(arguments: argparse.Namespace) -> int:
    """Start or resume the run, then open the dashboard on it, or follow it on stderr with --headless."""
    from heretic_tui.core.finetuning.job import start_finetune

    base = resumed_config(arguments, "fine-tuning")
    settings = settings_from_arguments(arguments, base_config=base, extra=setting_overrides(arguments))
    handle = start_finetune(settings, run_dir_path(arguments), arguments.resume)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, last = follow_headless(handle)
    if isinstance(last, JobFinished):
        _print_summary(last.summary, handle.run.report_path)
    return code
