"""The layering the README describes, checked on the code itself rather than promised in prose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold(tmp_path: Path) -> None:
    """import-linter reads the contracts in pyproject.toml; run from elsewhere so only the installed names count."""
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout, result.stdout[-4000:]


def test_headless_commands_load_no_textual(tmp_path: Path) -> None:
    """The headless path (here: listing runs) must work on a box where the terminal UI cannot even be imported."""
    code = (
        "import sys\n"
        "from heretic_tui.cli.main import dispatch\n"
        "code = dispatch(['runs'])\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] == 'textual' or name.startswith('heretic_tui.tui'))\n"
        "print('LOADED', loaded)\n"
        "sys.exit(code or (1 if loaded else 0))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOADED []" in result.stdout


def test_the_repository_folders_are_not_importable_names(tmp_path: Path) -> None:
    """Installed, the project answers only to heretic_tui.*: a bare 'core' or 'tui' would clash with other packages."""
    code = "import importlib.util as u; print([n for n in ('core', 'tui', 'cli') if u.find_spec(n) is not None])"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
