"""``heretic-tui --help`` and every command's help read well in an 80-column terminal, list what they promise, and
each shared flag is defined once (cli/arguments.py) so it reads and behaves the same in every command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from heretic_tui.cli.commands import COMMAND_MODULES
from heretic_tui.core.errors import EXIT_CODES

CLI_FOLDER = Path(__file__).resolve().parents[2] / "cli"
SHARED_FLAGS = {"--config", "--set", "--model", "--trials", "--headless", "--run-dir", "--resume", "run_dir"}


def help_text(*arguments: str) -> str:
    result = subprocess.run([sys.executable, "-m", "heretic_tui.cli", *arguments, "--help"], capture_output=True,
                            text=True, timeout=120, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_main_help_lists_every_command_and_every_exit_code_within_80_columns() -> None:
    text = help_text()
    assert text.startswith("usage: heretic-tui [-h] COMMAND ...\n")
    assert "heretic-tui                  open the full-screen app" in text
    assert "heretic-tui ./model-folder   open the actions for that model" in text
    commands = text.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ") and line[2] != " "]
    assert listed == list(COMMAND_MODULES)
    epilog = text.split("\nExit codes:\n", 1)[1]
    assert [int(line.split()[0]) for line in epilog.splitlines() if line[2] != " "] == [
        item.code for item in EXIT_CODES]
    assert " ".join(epilog.split()) == " ".join(f"{item.code} {item.meaning}" for item in EXIT_CODES)
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_each_command_help_has_a_description_and_fits_80_columns(command: str) -> None:
    text = help_text(command)
    assert text.startswith(f"usage: heretic-tui {command} ")
    description = text.split("\n\n", 2)[1]
    assert description[0].isupper() and description.rstrip().endswith("."), description
    assert "\nExit codes:\n" in text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def defined_flags(path: Path) -> set[str]:
    """The option strings a module passes to ``add_argument`` itself (not through the shared helpers)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            found |= {argument.value for argument in node.args if isinstance(argument, ast.Constant)}
    return found


def test_shared_flags_are_defined_once_in_cli_arguments() -> None:
    assert SHARED_FLAGS <= defined_flags(CLI_FOLDER / "arguments.py")
    for path in sorted((CLI_FOLDER / "commands").glob("*.py")):
        assert not defined_flags(path) & SHARED_FLAGS, f"{path.name} defines {defined_flags(path) & SHARED_FLAGS}"
