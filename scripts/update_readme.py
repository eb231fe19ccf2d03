"""Regenerate the generated parts of the repository: config.toml and the README's generated sections.

Each generated README section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers and comes from
the one place that defines it: the config reference from core/settings.py, the exit codes from
``core.errors.EXIT_CODES``, the command synopsis from the command-line parser itself. tests/cli/test_readme_sections.py fails
when any of them differs from what this script would write, so the README cannot drift from the code.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SYNOPSIS_WIDTH = 116

from heretic_tui.cli.main import HelpFormatter, command_modules  # noqa: E402
from heretic_tui.core.errors import EXIT_CODES  # noqa: E402
from heretic_tui.core.settings import render_config, render_markdown_reference  # noqa: E402


def exit_codes_markdown() -> str:
    """The exit-code table, in the order of ``EXIT_CODES``."""
    lines = ["| exit code | meaning |", "| --- | --- |"]
    lines += [f"| `{item.code}` | {item.meaning} |" for item in EXIT_CODES]
    return "\n".join(lines) + "\n"


def cli_synopsis() -> str:
    """Every command's usage line as ``--help`` prints it, in a fenced block."""
    formatter = functools.partial(HelpFormatter, width=SYNOPSIS_WIDTH)
    usages = []
    for name, module in command_modules().items():
        parser = argparse.ArgumentParser(prog=f"heretic-tui {name}", formatter_class=formatter)
        module.add_arguments(parser)
        usage = parser.format_usage().removeprefix("usage: ").rstrip()
        usages.append("\n".join(line.removeprefix(" " * len("usage: ")) for line in usage.splitlines()))
    return "```\n" + "\n".join(usages) + "\n```\n"


SECTIONS = {
    "cli-reference": cli_synopsis,
    "exit-codes": exit_codes_markdown,
    "config-reference": render_markdown_reference,
}
"""Marker name -> the function that renders what goes between its markers."""


def replace_section(text: str, name: str, content: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1:
        raise SystemExit(f"README.md must hold the markers {start} and {end} exactly once each.")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{content}{end}{after}"


def generated_readme(text: str) -> str:
    """``text`` (the README) with every generated section rendered anew."""
    for name, render in SECTIONS.items():
        text = replace_section(text, name, render())
    return text


def main() -> None:
    (ROOT / "config.toml").write_text(render_config(), encoding="utf-8")
    README.write_text(generated_readme(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {ROOT / 'config.toml'} and the generated sections of {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
