"""Bad input: a clear one-paragraph message that names the problem and the fix, exit code 2, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from heretic_tui.cli.main import main
from heretic_tui.core.abliteration.prompts import load_prompts
from heretic_tui.core.errors import UserInputError


def run_cli(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as caught:
        main(arguments)
    captured = capsys.readouterr()
    return int(caught.value.code or 0), captured.err


def runs_written(home: Path) -> list[Path]:
    root = home / "data" / "heretic-tui" / "runs"
    return list(root.iterdir()) if root.exists() else []


@pytest.fixture
def prompt_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.txt"
    good.write_text("how do i make bread ?\nwrite a poem about autumn\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02abc\x00" * 20)
    table = tmp_path / "table.csv"
    table.write_text("prompt,label\nhow do i make bread ?,0\n")
    return {"good": good, "empty": empty, "binary": binary, "table": table}


def abliterate_arguments(model: str, prompts: dict[str, Path], **replace: str) -> list[str]:
    sources = {"good": str(prompts["good"]), "bad": str(prompts["good"]),
               "good-eval": str(prompts["good"]), "bad-eval": str(prompts["good"])}
    sources.update(replace)
    arguments = ["abliterate", "--headless", "--model", model, "--trials", "2"]
    for name, value in sources.items():
        arguments += [f"--{name}-prompts", value]
    return arguments


@pytest.fixture
def model_without_template(tiny_models: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_models["llama"], folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("missing model", r"Model path .*does-not-exist does not exist"),
        ("folder without config", r"has no config.json"),
        ("no chat template", r"has no chat template.*model.chat_template"),
        ("empty prompts", r"holds no prompts"),
        ("binary prompts", r"looks like a binary file"),
        ("missing column", r"has no column 'text'.*prompt, label"),
        ("column needed", r"several columns \(prompt, label\)"),
        ("missing prompt file", r"prompt file .*nothing.txt does not exist"),
        ("out of range", r"'model.max_batch_size' is not valid \(too small\).*from 1 to 4096"),
        ("unknown key", r"unknown setting 'optimization.trails'.*optimization.trials"),
    ],
)
def test_bad_abliterate_input_exits_2_with_a_clear_message(
    case: str, pattern: str, tiny_models: dict[str, Path], prompt_files: dict[str, Path],
    model_without_template: Path, isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    model = str(tiny_models["llama"])
    arguments = abliterate_arguments(model, prompt_files)
    if case == "missing model":
        arguments = abliterate_arguments(str(tmp_path / "does-not-exist"), prompt_files)
    elif case == "folder without config":
        (tmp_path / "empty-model").mkdir()
        arguments = abliterate_arguments(str(tmp_path / "empty-model"), prompt_files)
    elif case == "no chat template":
        arguments = abliterate_arguments(str(model_without_template), prompt_files)
    elif case == "empty prompts":
        arguments = abliterate_arguments(model, prompt_files, bad=str(prompt_files["empty"]))
    elif case == "binary prompts":
        arguments = abliterate_arguments(model, prompt_files, bad=str(prompt_files["binary"]))
    elif case == "missing column":
        arguments = abliterate_arguments(model, prompt_files, bad=f"{prompt_files['table']}#text")
    elif case == "column needed":
        arguments = abliterate_arguments(model, prompt_files, bad=str(prompt_files["table"]))
    elif case == "missing prompt file":
        arguments = abliterate_arguments(model, prompt_files, bad=str(tmp_path / "nothing.txt"))
    elif case == "out of range":
        arguments = abliterate_arguments(model, prompt_files) + ["--set", "model.max_batch_size=0"]
    elif case == "unknown key":
        arguments = abliterate_arguments(model, prompt_files) + ["--set", "optimization.trails=3"]
    code, error = run_cli(arguments, capsys)
    assert code == 2, error
    assert error.startswith("error: ") and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
    assert re.search(pattern, error), error
    assert runs_written(isolated_home) == []


def test_invalid_toml_config_exits_2(tmp_path: Path, tiny_models: dict[str, Path], prompt_files: dict[str, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[optimization\ntrials = 3\n")
    code, error = run_cli(abliterate_arguments(str(tiny_models["llama"]), prompt_files) + ["--config", str(config)],
                          capsys)
    assert code == 2 and "not valid TOML" in error and str(config) in error


def test_a_folder_that_is_not_a_run_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run\n")
    code, error = run_cli(["export", str(folder), "--trial", "0", "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{folder} is not a heretic-tui run: it has no job.json" in error, error
    assert not (tmp_path / "out").exists()
    code, error = run_cli(["abliterate", "--headless", "--resume", "--run-dir", str(folder)], capsys)
    assert code == 2 and f"{folder} is not a heretic-tui run: it has no job.json" in error, error
    assert sorted(path.name for path in folder.iterdir()) == ["notes.txt"]


def test_hub_dataset_offline_points_at_local_files() -> None:
    with pytest.raises(UserInputError, match=r"'someone/unreachable-dataset' \(split 'train'\) could not be "
                                             r"loaded.*point the setting at a local file") as raised:
        load_prompts("hf:someone/unreachable-dataset@train#text")
    assert raised.value.exit_code == 2 and "\n" not in str(raised.value)


def test_table_and_builtin_sources_load(prompt_files: dict[str, Path]) -> None:
    assert load_prompts(f"{prompt_files['table']}#prompt") == ["how do i make bread ?"]
    assert load_prompts(str(prompt_files["good"]), limit=1) == ["how do i make bread ?"]
