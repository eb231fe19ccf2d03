"""What the bare command and a folder argument open: the app, the actions of a model, or one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from heretic_tui.cli import main as cli_main


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what would be handed to the full-screen app instead of starting it."""
    calls: list[dict[str, Any]] = []

    def launch(**options: Any) -> int:
        calls.append(options)
        return 0

    monkeypatch.setattr(cli_main, "launch_app", launch)
    return calls


def test_no_arguments_open_the_app_with_the_layered_settings(launched: list[dict[str, Any]], isolated_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_home / "config.toml").write_text("[optimization]\ntrials = 17\n")
    monkeypatch.setenv("HERETIC_SEED", "5")
    assert cli_main.dispatch([]) == 0
    [options] = launched
    assert options["settings"].optimization.trials == 17 and options["settings"].optimization.seed == 5


def test_a_model_folder_opens_its_actions(launched: list[dict[str, Any]], tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert cli_main.dispatch([str(tmp_path)]) == 0
    assert launched == [{"model_path": str(tmp_path.resolve())}]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["no-such-thing"], "'no-such-thing' is neither a command (abliterate, export"),
        (["no-such-thing", "--trials", "3"], "Unknown command 'no-such-thing'. Commands: abliterate"),
    ],
)
def test_anything_else_is_one_paragraph_with_exit_2(arguments: list[str], message: str,
                                                    launched: list[dict[str, Any]],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.main(arguments)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error.startswith(f"error: {message}") and len(error.splitlines()) == 1
    assert launched == []


def test_a_broken_default_config_stops_the_app_before_it_opens(launched: list[dict[str, Any]], isolated_home: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (isolated_home / "config.toml").write_text("model = 'demo'\n")
    with pytest.raises(SystemExit) as exited:
        cli_main.main([])
    assert exited.value.code == 2 and "Write a line '[model]' above it" in capsys.readouterr().err
    assert launched == []
