"""The ``heretic-tui`` command: the full-screen app by default, headless commands on the same core.

Exit codes: 0 success, 1 the job failed, 2 bad input (nothing was written), 130 cancelled (the run is resumable).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    HereticError,
    UserInputError,
    exit_codes_text,
)
from heretic_tui.core.runs.events import (
    ArtifactWritten,
    BaselineMeasured,
    Event,
    JobCancelled,
    JobError,
    JobFinished,
    JobStarted,
    JobWarning,
    LogLine,
    Metrics,
    PhaseFinished,
    PhaseStarted,
    Progress,
    TrainingStep,
    TrialFinished,
)
from heretic_tui.core.runs.jobs import JobHandle
from heretic_tui.core.settings import Settings, load_settings, overrides_from_text, parse_assignment

COMMANDS = ("abliterate", "export", "demo", "attach", "runs", "finetune", "upload", "compare", "registry")

FLAG_SETTINGS = {
    "model": "model.model",
    "good_prompts": "prompts.good_prompts",
    "bad_prompts": "prompts.bad_prompts",
    "good_eval_prompts": "prompts.good_eval_prompts",
    "bad_eval_prompts": "prompts.bad_eval_prompts",
    "system_prompt": "prompts.system_prompt",
    "trials": "optimization.trials",
    "seed": "optimization.seed",
}
"""CLI flag (argparse dest) -> setting key; every other setting is reachable with --set section.name=value."""


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config.toml to read (default: ./config.toml, then the user config folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting, e.g. --set optimization.startup_trials=10 (repeatable)")


def _add_abliteration_flags(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--headless", action="store_true", help="no full-screen app: progress lines on stderr")
    _add_settings_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heretic-tui",
        description="Abliterate, fine-tune and ship chat models. Without a command the full-screen app opens; "
                    "'heretic-tui ./model-folder' opens the actions for that model.",
        epilog=exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    abliterate = commands.add_parser("abliterate", help="find and remove the refusal direction of a model")
    _add_abliteration_flags(abliterate)

    export = commands.add_parser("export", help="write a trial of a run as a model folder or LoRA adapter")
    export.add_argument("run_dir", help="the abliteration run folder")
    export.add_argument("--trial", type=int, required=True, help="trial number (see report.json 'pareto')")
    export.add_argument("--output", required=True, help="folder to create")
    export.add_argument("--adapter", action="store_true", help="write a LoRA adapter instead of merged weights")
    export.add_argument("--headless", action="store_true", help="accepted for symmetry; export is always headless")

    demo = commands.add_parser("demo", help="build the demo model (once) and abliterate it end to end, offline")
    demo.add_argument("--trials", help="number of trials (default 50)")
    demo.add_argument("--run-dir", help="run folder to create")
    demo.add_argument("--headless", action="store_true", help="accepted for symmetry; the demo prints to stderr")
    _add_settings_flags(demo)

    attach = commands.add_parser("attach", help="open the dashboard of a live or finished run")
    attach.add_argument("run_dir")
    attach.add_argument("--headless", action="store_true", help="replay and follow the run's events on stderr")

    runs = commands.add_parser("runs", help="list runs with their status")
    _add_settings_flags(runs)

    finetune = commands.add_parser("finetune", help="train a LoRA/QLoRA adapter on documents or chat data")
    _add_settings_flags(finetune)
    try:
        from heretic_tui.cli.finetune import add_arguments as add_finetune_arguments
    except ImportError:
        add_finetune_arguments = None
    if add_finetune_arguments is not None:
        add_finetune_arguments(finetune)

    from heretic_tui.cli.shipping import add_compare_arguments, add_registry_arguments, add_upload_arguments

    add_upload_arguments(commands.add_parser("upload", help="upload a model or adapter folder to the Hugging Face Hub"))
    compare = commands.add_parser("compare", help="two or three models side by side: answers, refusals, KL, perplexity")
    _add_settings_flags(compare)
    add_compare_arguments(compare)
    registry = commands.add_parser("registry", help="the index of runs, models (with lineage) and comparisons")
    _add_settings_flags(registry)
    add_registry_arguments(registry)
    return parser


def settings_from_arguments(arguments: argparse.Namespace, base_config: Path | None = None,
                            extra: dict[str, str] | None = None) -> Settings:
    """Defaults < config file < HERETIC_* environment < flags (--set first, then the named flags)."""
    texts: dict[str, str] = dict(extra or {})
    for assignment in getattr(arguments, "set", []) or []:
        key, value = parse_assignment(assignment)
        texts[key] = value
    for dest, key in FLAG_SETTINGS.items():
        value = getattr(arguments, dest, None)
        if value is not None:
            texts[key] = str(value)
    overrides = overrides_from_text(texts, origin="Command line")
    config = base_config or getattr(arguments, "config", None)
    return load_settings(config, overrides=overrides)


class ProgressPrinter:
    """Readable progress lines on stderr for headless runs (a script can also read events.jsonl)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.time()
        self._last_progress: dict[str, float] = {}

    def line(self, text: str) -> None:
        elapsed = time.time() - self.started
        print(f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] {text}", file=self.stream, flush=True)

    def __call__(self, item: Event) -> None:
        if isinstance(item, JobStarted):
            self.line(f"{'resumed' if item.resumed else 'started'} {item.job} of {item.model} in {item.run_dir}")
        elif isinstance(item, PhaseStarted):
            count = f" ({item.total})" if item.total else ""
            self.line(f"{item.phase}{count}: {item.description}")
        elif isinstance(item, Progress):
            now = time.time()
            if item.completed == item.total or now - self._last_progress.get(item.phase, 0.0) > 5.0:
                self._last_progress[item.phase] = now
                total = f"/{item.total}" if item.total else ""
                self.line(f"  {item.phase}: {item.completed}{total}")
        elif isinstance(item, PhaseFinished):
            self.line(f"  {item.phase} done in {item.seconds:.1f}s")
        elif isinstance(item, BaselineMeasured):
            self.line(f"baseline: {item.refusals}/{item.total} refusals")
        elif isinstance(item, TrialFinished):
            self.line(f"trial {item.number} (target {item.total} trials): refusals {item.refusals}/{item.refusal_total}, "
                      f"KL {item.kl:.4f}, {item.seconds:.2f}s  (Pareto front: {len(item.pareto)} trials)")
        elif isinstance(item, TrainingStep):
            parts = [f"step {item.step}/{item.total_steps}"]
            for name in ("loss", "eval_loss", "learning_rate", "tokens_per_second"):
                value = getattr(item, name)
                if value is not None:
                    parts.append(f"{name} {value:.4g}")
            self.line(", ".join(parts))
        elif isinstance(item, Metrics):
            self.line(f"{item.name}: " + ", ".join(f"{key} {value}" for key, value in item.values.items()))
        elif isinstance(item, (LogLine, JobWarning)):
            prefix = "warning: " if isinstance(item, JobWarning) else ""
            self.line(prefix + item.message)
        elif isinstance(item, ArtifactWritten):
            self.line(f"wrote {item.name}: {item.path}")
        elif isinstance(item, JobError):
            self.line(f"error: {item.message}")
        elif isinstance(item, JobCancelled):
            self.line(f"cancelled: {item.reason}")
        elif isinstance(item, JobFinished):
            self.line("finished")


def follow(handle: JobHandle, on_event: Callable[[Event], None]) -> tuple[int, Event | None]:
    """Print a job's events until it ends; Ctrl-C asks the worker to cancel gracefully, a second one kills it."""
    last: Event | None = None
    interrupts = 0
    while True:
        try:
            for item in handle.events():
                on_event(item)
                last = item
            break
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                print("cancelling: finishing the trial in flight and saving (Ctrl-C again to stop at once)",
                      file=sys.stderr, flush=True)
                handle.request_cancel()
            else:
                handle.kill()
            continue
    return exit_code_for(last), last


def exit_code_for(last: Event | None) -> int:
    if isinstance(last, JobFinished):
        return EXIT_OK
    if isinstance(last, JobCancelled):
        return EXIT_CANCELLED
    if isinstance(last, JobError):
        if last.exit_code is not None:
            return last.exit_code
        if last.user_error:
            return EXIT_BAD_INPUT
    return EXIT_FAILED


def command_abliterate(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.abliteration.job import start_abliteration

    base = None
    if arguments.resume:
        from heretic_tui.core.runs.jobs import RunDirectory

        if not arguments.run_dir:
            raise UserInputError("--resume needs --run-dir pointing at the run to continue.")
        base = RunDirectory.open(arguments.run_dir).config_path
    settings = settings_from_arguments(arguments, base_config=base)
    handle = start_abliteration(settings, Path(arguments.run_dir) if arguments.run_dir else None, arguments.resume)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    print(f"run folder: {handle.run.path}", file=sys.stderr, flush=True)
    code, last = follow(handle, ProgressPrinter())
    if isinstance(last, JobFinished):
        summary = last.summary
        print(f"report: {handle.run.report_path}", file=sys.stderr)
        if summary.get("chosen_trial") is not None:
            print(f"chosen trial {summary['chosen_trial']}: refusals {summary['refusals']}/{summary['total']} "
                  f"(baseline {summary['baseline_refusals']}/{summary['total']}), KL {summary['kl']:.4f}",
                  file=sys.stderr)
    return code


def command_export(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.shipping.export import start_export

    handle = start_export(arguments.run_dir, arguments.trial, arguments.output, arguments.adapter)
    code, _ = follow(handle, ProgressPrinter())
    if code == EXIT_OK:
        print(Path(arguments.output).expanduser().resolve())
    return code


def command_demo(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.abliteration.job import start_abliteration

    extra = {"model.model": "demo", "optimization.trials": str(arguments.trials or 50),
             "optimization.startup_trials": "15"}
    settings = settings_from_arguments(arguments, extra=extra)
    settings.model.model = "demo"
    handle = start_abliteration(settings, Path(arguments.run_dir) if arguments.run_dir else None, export_chosen=True)
    print(f"run folder: {handle.run.path}", file=sys.stderr, flush=True)
    code, last = follow(handle, ProgressPrinter())
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


def command_attach(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.runs.jobs import attach

    handle = attach(arguments.run_dir)
    if not arguments.headless:
        return launch_app(attach_run=handle.run.path)
    code, _ = follow(handle, ProgressPrinter())
    return code


def command_runs(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.runs.jobs import list_runs, runs_root

    settings = settings_from_arguments(arguments)
    for run in list_runs(runs_root(settings)):
        job = run.read_job()
        print(f"{run.status():10s} {job.get('kind', '?'):11s} {job.get('model', '?'):30s} {run.path}")
    return EXIT_OK


def command_shipping(arguments: argparse.Namespace) -> int:
    from heretic_tui.cli.shipping import run_command

    return run_command(arguments, settings_from_arguments, follow, ProgressPrinter, launch_app)


def command_finetune(arguments: argparse.Namespace) -> int:
    try:
        from heretic_tui.cli.finetune import run_command
    except ImportError:
        raise UserInputError("Fine-tuning is not built yet in this version of heretic-tui.") from None
    return run_command(arguments, settings_from_arguments, follow, ProgressPrinter, launch_app)


def launch_app(**options: Any) -> int:
    from heretic_tui.tui.app import launch

    return launch(**options)


def dispatch(argv: Sequence[str]) -> int:
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        if len(argv) > 1:
            raise UserInputError(f"Unknown command {argv[0]!r}. Commands: {', '.join(COMMANDS)}; or a model folder.")
        path = Path(argv[0]).expanduser()
        if not (path / "config.json").is_file():
            raise UserInputError(
                f"{argv[0]!r} is neither a command ({', '.join(COMMANDS)}) nor a model folder with config.json."
            )
        return launch_app(model_path=str(path.resolve()))
    parser = build_parser()
    arguments = parser.parse_args(argv)
    handlers = {
        "abliterate": command_abliterate,
        "export": command_export,
        "demo": command_demo,
        "attach": command_attach,
        "runs": command_runs,
        "finetune": command_finetune,
        "upload": command_shipping,
        "compare": command_shipping,
        "registry": command_shipping,
    }
    if arguments.command is None:
        return launch_app(settings=settings_from_arguments(argparse.Namespace()))
    return handlers[arguments.command](arguments)


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = dispatch(list(sys.argv[1:] if argv is None else argv))
    except HereticError as error:
        print(f"error: {error}", file=sys.stderr)
        code = error.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
