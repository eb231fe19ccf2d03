"""The README's generated sections (command synopsis, exit codes, config reference) are what the code says today."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from heretic_tui.core.errors import EXIT_CODES
from heretic_tui.core.settings import setting_fields

ROOT = Path(__file__).resolve().parents[2]


def update_readme() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:start -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def test_every_generated_section_of_the_readme_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    script = update_readme()
    for name in script.SECTIONS:
        assert section(script.generated_readme(text), name) == section(text, name), (
            f"README.md's {name} section is out of date: run .venv/bin/python scripts/update_readme.py"
        )


def test_the_readme_exit_code_table_lists_every_documented_code_in_order() -> None:
    rows = [line for line in section((ROOT / "README.md").read_text(encoding="utf-8"), "exit-codes").splitlines()
            if line.startswith("| `")]
    assert [int(row.split("`")[1]) for row in rows] == [item.code for item in EXIT_CODES]
    assert [row.split("|")[2].strip() for row in rows] == [item.meaning for item in EXIT_CODES]


def test_the_readme_synopsis_and_config_reference_cover_every_command_and_setting() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    synopsis = section(text, "cli-reference")
    commands = [line.split()[1] for line in synopsis.splitlines() if line.startswith("heretic-tui ")]
    assert commands == list(update_readme().command_modules())
    reference = section(text, "config-reference")
    assert [line.split("`")[1] for line in reference.splitlines() if line.startswith("| `")] == [
        spec.key for spec in setting_fields()]
