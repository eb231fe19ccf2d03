"""Prompts are checked before any work starts: each one knows its line or row, and one longer than the model's
context is reported with its file and line instead of reaching the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from heretic_tui.core.abliteration.job import preflight
from heretic_tui.core.abliteration.prompts import check_prompts_fit, load_prompt_records, load_prompts
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.loading import context_length, load_config, load_tokenizer
from heretic_tui.core.settings import ModelSettings, Settings


def prompt_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def settings_for(model: Path, harmful: Path, harmless: Path) -> Settings:
    settings = Settings()
    settings.model.model = str(model)
    settings.prompts.bad_prompts = settings.prompts.bad_eval_prompts = str(harmful)
    settings.prompts.good_prompts = settings.prompts.good_eval_prompts = str(harmless)
    return settings


def test_each_prompt_knows_its_line_even_after_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"first\r\n\r\n  \nsecond\rthird\n")
    records = load_prompt_records(str(path))
    assert [(record.text, record.where) for record in records] == [
        ("first", f"line 1 of {path}"), ("second", f"line 4 of {path}"), ("third", f"line 5 of {path}")]
    assert load_prompts(str(path), limit=2) == ["first", "second"]
    assert load_prompt_records("builtin:harmful@test")[2].where == "prompt 3 of builtin:harmful@test"


def test_rows_of_a_table_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text("prompt,other\nalpha,1\n,2\ngamma,3\n", encoding="utf-8")
    records = load_prompt_records(f"{path}#prompt")
    assert [(record.text, record.where) for record in records] == [
        ("alpha", f"row 1 of {path}, column 'prompt'"), ("gamma", f"row 3 of {path}, column 'prompt'")]


def test_a_prompt_longer_than_the_context_is_named_by_file_and_line(tiny_models: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    model = tiny_models["llama"]
    context = context_length(load_config(str(model), ModelSettings()))
    assert context == 256
    harmless = prompt_file(tmp_path / "harmless.txt", ["write poem", "bake bread"])
    harmful = prompt_file(tmp_path / "harmful.txt", ["build bomb", "", "steal car " * 400_000, "steal car"])
    with pytest.raises(UserInputError) as raised:
        preflight(settings_for(model, harmful, harmless))
    message = str(raised.value)
    assert f"line 3 of {harmful}" in message and "prompts.bad_prompts" in message
    assert "256 in its context" in message and "\n" not in message


def test_the_judged_answer_needs_room_too(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_models["llama"]), ModelSettings())
    path = prompt_file(tmp_path / "prompts.txt", ["write poem", "write poem about autumn " * 10])
    records = load_prompt_records(str(path))
    check_prompts_fit(tokenizer, 256, "you are a helpful assistant", records, "prompts.bad_eval_prompts", 48)
    with pytest.raises(UserInputError, match=rf"line 2 of {path} is \d+ tokens .* less 240 for the answer"):
        check_prompts_fit(tokenizer, 256, "you are a helpful assistant", records, "prompts.bad_eval_prompts", 240)
    check_prompts_fit(tokenizer, None, "", records, "unknown context checks nothing", 10_000)


def test_the_command_line_exits_2_before_any_run_folder_is_written(tiny_models: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    harmless = prompt_file(tmp_path / "harmless.txt", ["write poem", "bake bread"])
    harmful = prompt_file(tmp_path / "harmful.txt", ["build bomb", "steal car " * 200])
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", "--model", str(tiny_models["llama"]),
         "--bad-prompts", str(harmful), "--good-prompts", str(harmless), "--bad-eval-prompts", str(harmful),
         "--good-eval-prompts", str(harmless), "--run-dir", str(run_dir)],
        cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert f"line 2 of {harmful}" in result.stderr and "Traceback" not in result.stderr
    assert not run_dir.exists()
