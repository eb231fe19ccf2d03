"""core/ must stay usable headless: it never imports Textual (or anything from tui/)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"


def test_no_core_module_imports_textual_or_the_tui() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("textual", "tui") and not _is_cli_launcher(path, node):
                    offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno} imports {name}")
    assert offenders == []


def _is_cli_launcher(path: Path, node: ast.AST) -> bool:
    """The CLI's launch_app is the one place that hands over to the TUI, lazily, when no --headless is given."""
    return path.name == "cli.py" and isinstance(node, ast.ImportFrom) and node.module == "tui.app"


def test_importing_the_whole_core_loads_no_textual() -> None:
    modules = sorted(
        ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
        for path in CORE.rglob("*.py")
        if path.name != "__main__.py"
    )
    code = "import sys\n" + "".join(f"import {name}\n" for name in modules) + (
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.') or m.startswith('tui')]\n"
        "print(bad)\nsys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=CORE.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
