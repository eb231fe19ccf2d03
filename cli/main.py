"""The ``heretic-tui`` command, the one composition root: the full-screen app by default, headless commands else.

Each command lives in its own module under :mod:`heretic_tui.cli.commands`; this module only builds the parser
from them, routes ``heretic-tui ./model-folder`` to the app, checks the paths every command was given the same way
(:func:`heretic_tui.cli.arguments.check_paths`), and turns every error the user can act on into one paragraph and
its exit code (the table in :mod:`heretic_tui.core.errors`).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from heretic_tui.cli.arguments import check_paths, settings_from_arguments
from heretic_tui.cli.commands import COMMAND_MODULES
from heretic_tui.cli.following import launch_app
from heretic_tui.core.errors import HereticError, UserInputError, exit_codes_text

DESCRIPTION = """\
Abliterate, fine-tune and ship chat models.

  heretic-tui                  open the full-screen app
  heretic-tui ./model-folder   open the actions for that model
  heretic-tui COMMAND --help   what a command does and its flags

Every setting can come from config.toml, a HERETIC_<NAME> environment variable
or --set section.name=value; the root config.toml lists them all."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep the line breaks they were written with; the command list shows one line per command.

    argparse would print the sub-command placeholder as a line of its own above the commands (or all their names
    in braces); listing the commands themselves at the first level reads better.
    """

    def __init__(self, prog: str, width: int | None = None) -> None:
        super().__init__(prog, max_help_position=24, width=width)

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):
            return "".join(self._format_action(command) for command in action._get_subactions())
        return super()._format_action(action)


def command_modules() -> dict[str, ModuleType]:
    modules = {name: importlib.import_module(f"heretic_tui.cli.commands.{name}") for name in COMMAND_MODULES}
    return {module.NAME: module for module in modules.values()}


def command_description(module: ModuleType) -> str:
    """A command's ``DESCRIPTION`` (a few wrapped lines), or its one-line ``HELP`` as a sentence, wrapped."""
    description = getattr(module, "DESCRIPTION", None)
    if description:
        return description
    return textwrap.fill(module.HELP[0].upper() + module.HELP[1:] + ".", 79)


def build_parser(commands: dict[str, ModuleType] | None = None, width: int | None = None) -> argparse.ArgumentParser:
    """The parser of every command; ``width`` fixes the help's width (default: the terminal's), e.g. for docs."""
    formatter = functools.partial(HelpFormatter, width=width)
    parser = argparse.ArgumentParser(
        prog="heretic-tui",
        description=DESCRIPTION,
        epilog=exit_codes_text(),
        formatter_class=formatter,
    )
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, module in (commands or command_modules()).items():
        module.add_arguments(subparsers.add_parser(
            name, help=module.HELP, description=command_description(module), epilog=exit_codes_text(),
            formatter_class=formatter,
        ))
    return parser


def dispatch(argv: Sequence[str]) -> int:
    if argv and argv[0] not in COMMAND_MODULES and not argv[0].startswith("-"):
        if len(argv) > 1:
            raise UserInputError(
                f"Unknown command {argv[0]!r}. Commands: {', '.join(COMMAND_MODULES)}; or a model folder."
            )
        path = Path(argv[0]).expanduser()
        if not (path / "config.json").is_file():
            raise UserInputError(
                f"{argv[0]!r} is neither a command ({', '.join(COMMAND_MODULES)}) nor a model folder with config.json."
            )
        return launch_app(model_path=str(path.resolve()))
    commands = command_modules()
    arguments = build_parser(commands).parse_args(argv)
    check_paths(arguments)
    if arguments.command is None:
        return launch_app(settings=settings_from_arguments(argparse.Namespace()))
    return commands[arguments.command].run(arguments)


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
