"""``heretic-tui compare``: two or three models side by side (answers, refusals, KL, perplexity), as a job."""

from __future__ import annotations

import argparse

from heretic_tui.cli.arguments import add_headless_flag, add_run_dir_flag, add_settings_flags, settings_from_arguments
from heretic_tui.cli.following import follow_headless, launch_app, progress_line
from heretic_tui.core.runs.events import JobFinished

NAME = "compare"
HELP = "two or three models side by side: answers, refusals, KL, perplexity"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser)
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="two or three models: folders, hub ids, 'demo', adapter folders or RUN_DIR#TRIAL; "
                             "KL divergence is measured against the first")
    parser.add_argument("--prompts", required=True,
                        help="prompt source, e.g. builtin:harmful@test or a text file with one prompt per line")
    parser.add_argument("--max-new-tokens", type=int,
                        help="longest greedy answer per prompt, in tokens (default: a short paragraph's worth)")
    parser.add_argument("--held-out", help="prompt source whose texts measure perplexity (default: built-in prose)")
    add_run_dir_flag(parser)
    add_headless_flag(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.shipping.compare import DEFAULT_MAX_NEW_TOKENS, start_compare

    settings = settings_from_arguments(arguments)
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS if arguments.max_new_tokens is None else arguments.max_new_tokens
    handle = start_compare(arguments.models, arguments.prompts, settings, arguments.run_dir,
                           max_new_tokens=max_new_tokens, held_out=arguments.held_out)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, last = follow_headless(handle)
    if isinstance(last, JobFinished):
        for number, model in enumerate(last.summary.get("models", []), 1):
            kl = model.get("kl_vs_first")
            perplexity = model.get("perplexity")
            progress_line(
                f"{number}. {model['label']}: refusals {model['refusals']}/{model['total']}, KL vs model 1 "
                f"{'n/a (different tokenizer)' if kl is None else f'{kl:.4f}'}, perplexity "
                f"{'n/a' if perplexity is None else f'{perplexity:.2f}'}"
            )
        progress_line(f"comparison: {last.summary.get('markdown')}")
        print(last.summary.get("markdown"))
    return code
