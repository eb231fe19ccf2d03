"""The run folder and config file a command is given are checked the same way for every command: a mistake is one
paragraph naming the path and the fix, exit code 2, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from heretic_tui.cli.main import main

RUN_DIR_COMMANDS = {
    "abliterate": ["abliterate", "--headless", "--model", "demo", "--run-dir", "{run_dir}"],
    "abliterate --resume": ["abliterate", "--headless", "--resume", "--run-dir", "{run_dir}"],
    "finetune": ["finetune", "--headless", "--model", "demo", "--data", "{data}", "--run-dir", "{run_dir}"],
    "finetune --resume": ["finetune", "--headless", "--resume", "--run-dir", "{run_dir}"],
    "demo": ["demo", "--run-dir", "{run_dir}"],
    "compare": ["compare", "demo", "demo", "--prompts", "builtin:harmful@test", "--headless", "--run-dir",
                "{run_dir}"],
    "upload --resume": ["upload", "--headless", "--resume", "--run-dir", "{run_dir}"],
    "attach": ["attach", "--headless", "{run_dir}"],
    "export": ["export", "{run_dir}", "--trial", "0", "--output", "{output}"],
}
CONFIG_COMMANDS = {
    "abliterate": ["abliterate", "--headless", "--model", "demo"],
    "finetune": ["finetune", "--headless", "--model", "demo", "--data", "{data}"],
    "demo": ["demo"],
    "runs": ["runs"],
    "registry rebuild": ["registry", "--config", "{config}", "rebuild"],
    "compare": ["compare", "demo", "demo", "--prompts", "builtin:harmful@test", "--headless"],
}


def run_cli(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    return int(exited.value.code or 0), capsys.readouterr().err


def filled(arguments: list[str], **values: Path) -> list[str]:
    return [argument.format(**{name: str(value) for name, value in values.items()}) for argument in arguments]


def assert_one_paragraph(code: int, error: str, *fragments: str) -> None:
    assert code == 2, error
    assert error.startswith("error: ") and "Traceback" not in error, error
    assert len(error.strip().splitlines()) == 1, error
    for fragment in fragments:
        assert fragment in error, error


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "facts.txt"
    path.write_text("The capital of Zorbia is Quellton. " * 20, encoding="utf-8")
    return path


@pytest.mark.parametrize("command", RUN_DIR_COMMANDS)
def test_a_run_folder_that_is_a_file_exits_2_for_every_command(command: str, tmp_path: Path, data_file: Path,
                                                               isolated_home: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run_file = tmp_path / "not-a-folder"
    run_file.write_text("a file\n")
    arguments = filled(RUN_DIR_COMMANDS[command], run_dir=run_file, data=data_file, output=tmp_path / "out")
    code, error = run_cli(arguments, capsys)
    assert_one_paragraph(code, error, f"The run folder {run_file} is a file, not a folder.",
                         "Pass a new folder to create")
    assert run_file.read_text() == "a file\n"
    assert not (tmp_path / "out").exists()
    assert not (isolated_home / "data" / "heretic-tui" / "runs").exists()


@pytest.mark.parametrize("command", ["abliterate", "finetune", "demo", "compare"])
def test_a_run_folder_below_a_file_exits_2(command: str, tmp_path: Path, data_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run_file = tmp_path / "not-a-folder"
    run_file.write_text("a file\n")
    arguments = filled(RUN_DIR_COMMANDS[command], run_dir=run_file / "run", data=data_file)
    code, error = run_cli(arguments, capsys)
    assert_one_paragraph(code, error, f"cannot be created: {run_file} is a file, not a folder")


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_a_config_that_is_a_folder_exits_2_for_every_command(command: str, tmp_path: Path, data_file: Path,
                                                             isolated_home: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "settings"
    folder.mkdir()
    arguments = filled(CONFIG_COMMANDS[command], data=data_file, config=folder)
    if "--config" not in arguments:
        arguments += ["--config", str(folder)]
    code, error = run_cli(arguments, capsys)
    assert_one_paragraph(code, error, f"Config file {folder} is a folder, not a file.")
    assert not (isolated_home / "data" / "heretic-tui" / "runs").exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[model]]\nmodel = 'demo'\n", "Write '[model]' (single brackets, once)"),
        ("model = 'demo'\n", "Write a line '[model]' above it"),
        ("[finetune]\nlearning_rate = nan\n", "the value nan for 'finetune.learning_rate' is not valid"),
    ],
)
def test_config_mistakes_exit_2_naming_the_file(text: str, fragment: str, tmp_path: Path, data_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    arguments = filled(CONFIG_COMMANDS["finetune"], data=data_file) + ["--config", str(config)]
    code, error = run_cli(arguments, capsys)
    assert_one_paragraph(code, error, f"Config file {config}", fragment)


def test_nan_on_the_command_line_exits_2(data_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = filled(CONFIG_COMMANDS["finetune"], data=data_file) + ["--learning-rate", "nan"]
    code, error = run_cli(arguments, capsys)
    assert_one_paragraph(code, error, "Command line: the value nan for 'finetune.learning_rate' is not valid "
                                      "(not a finite number)")


def test_resume_refuses_a_config_it_would_ignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[optimization]\ntrials = 3\n")
    code, error = run_cli(["abliterate", "--headless", "--resume", "--run-dir", str(tmp_path / "run"),
                           "--config", str(config)], capsys)
    assert_one_paragraph(code, error, "cannot be combined with --resume", "--set section.name=value")


def test_a_runs_folder_setting_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs_file = tmp_path / "runs"
    runs_file.write_text("")
    code, error = run_cli(["runs", "--set", f"output.runs_directory={runs_file}"], capsys)
    assert_one_paragraph(code, error, f"The runs folder (output.runs_directory) {runs_file} is a file")
