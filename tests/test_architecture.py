"""The layering the README describes, checked on the code itself rather than promised in prose."""

from __future__ import annotations

import os
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


def test_a_headless_fine_tune_loads_no_textual(tmp_path: Path) -> None:
    """A real headless job end to end (start, follow, summary), not only a listing, keeps the UI unimported."""
    from finetuning.finetune_helpers import FACTS, build_model

    model = build_model(tmp_path / "model")
    data = tmp_path / "facts.txt"
    data.write_text(" ".join(FACTS * 6), encoding="utf-8")
    arguments = ["finetune", "--headless", "--model", str(model), "--data", str(data), "--run-dir",
                 str(tmp_path / "run"), "--max-steps", "1", "--set", "finetune.chunk_tokens=24", "--set",
                 "finetune.chunk_overlap=6", "--set", "finetune.knowledge_test_tokens=4"]
    code = (
        "import sys\n"
        "from heretic_tui.cli.main import dispatch\n"
        f"code = dispatch({arguments!r})\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] == 'textual' or name.startswith('heretic_tui.tui'))\n"
        "print('LOADED', loaded)\n"
        "sys.exit(code or (1 if loaded else 0))\n"
    )
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env=environment)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "LOADED []" in result.stdout
    assert (tmp_path / "run" / "report.json").is_file()


def test_the_repository_folders_are_not_importable_names(tmp_path: Path) -> None:
    """Installed, the project answers only to heretic_tui.*: a bare 'core' or 'tui' would clash with other packages."""
    code = "import importlib.util as u; print([n for n in ('core', 'tui', 'cli') if u.find_spec(n) is not None])"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
