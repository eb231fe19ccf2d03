"""``heretic-tui doctor``: check the machine before a run (Python, torch and CUDA, GPUs, disk, the Hub, terminal)."""

from __future__ import annotations

import argparse
import json
import textwrap

from heretic_tui.cli.arguments import add_settings_flags, settings_from_arguments

NAME = "doctor"
HELP = "check this machine before a run: torch and CUDA, GPUs, disk, Hub, terminal"
DESCRIPTION = """\
Check what a run needs: Python, torch (CUDA build, CUDA and driver versions),
bitsandbytes, flash-attn and vLLM, each GPU's free and total memory, free disk
for runs and the Hugging Face cache, write permission where runs go, whether a
Hub token is present (never shown) and the Hub answers, and the terminal's size
and colours. Each line is ok, warning or problem, with the fix. Exit code 0
when no line is a problem, 1 when one is (with --strict a warning counts)."""

LABELS = {"ok": "ok", "warning": "warning", "problem": "PROBLEM"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the checks as one JSON object instead of lines")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too, not only on problems")
    add_settings_flags(parser)


def format_check(check: object, width: int = 100) -> list[str]:
    """``ok       Python        3.11.2 at ...`` and, for a line that is not ok, its fix wrapped below it."""
    level, name, detail, fix = (getattr(check, key) for key in ("level", "name", "detail", "fix"))
    lines = [f"{LABELS[level]:8s} {name:16s} {detail}"]
    if fix and level != "ok":
        lines += textwrap.wrap(fix, width, initial_indent=" " * 9 + "fix: ", subsequent_indent=" " * 14)
    return lines


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.operations.doctor import exit_code, report_data, run_checks, summary_line

    settings = settings_from_arguments(arguments)
    checks = run_checks(settings)
    if arguments.json:
        print(json.dumps(report_data(checks), indent=2))
    else:
        for check in checks:
            print("\n".join(format_check(check)))
        print(summary_line(checks))
    return exit_code(checks, strict=arguments.strict)
