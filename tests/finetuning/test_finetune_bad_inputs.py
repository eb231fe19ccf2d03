"""Bad input is caught before a run folder exists: each case is one clear message naming the setting or file and the
fix, and the CLI exits with code 2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from heretic_tui.cli.main import main
from heretic_tui.core.errors import UserInputError
from heretic_tui.cli.commands.finetune import add_arguments, setting_overrides
from heretic_tui.core.finetuning.job import preflight
from finetune_helpers import FACTS, finetune_settings, write_jsonl


def test_a_target_module_the_model_lacks_names_it_and_the_real_ones(tiny_model: Path, documents: Path) -> None:
    settings = finetune_settings(tiny_model, [str(documents)], target_modules=["q_proj", "query_key_value"])
    with pytest.raises(UserInputError) as raised:
        preflight(settings)
    message = str(raised.value)
    assert "finetune.target_modules" in message and "'query_key_value'" in message
    assert "q_proj, up_proj, v_proj" in message and "leave target_modules empty" in message


def test_a_sequence_length_above_the_models_limit_says_the_limit(tiny_model: Path, documents: Path) -> None:
    settings = finetune_settings(tiny_model, [str(documents)], max_sequence_length=4096)
    with pytest.raises(UserInputError) as raised:
        preflight(settings)
    message = str(raised.value)
    assert "max_sequence_length is 4096" in message and "(256 tokens" in message
    assert "finetune.max_sequence_length=256" in message


def test_an_overlap_as_long_as_the_window_is_refused(tiny_model: Path, documents: Path) -> None:
    settings = finetune_settings(tiny_model, [str(documents)], chunk_tokens=32, chunk_overlap=32)
    with pytest.raises(UserInputError, match="chunk_overlap"):
        preflight(settings)


def test_preflight_accepts_good_input(tiny_model: Path, documents: Path) -> None:
    preflight(finetune_settings(tiny_model, [str(documents)], target_modules=["q_proj", "v_proj"],
                                max_sequence_length=256))


@pytest.mark.parametrize("case", ["empty folder", "bad jsonl", "missing module"])
def test_the_cli_exits_with_2_and_writes_no_run_folder(tiny_model: Path, tmp_path: Path, case: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    extra: list[str] = []
    expected = {"empty folder": "no files at all", "bad jsonl": "line 2", "missing module": "'attn'"}[case]
    if case == "bad jsonl":
        write_jsonl(data / "rows.jsonl", [{"text": FACTS[0]}, {"content": FACTS[1]}])
    elif case == "missing module":
        (data / "facts.txt").write_text(" ".join(FACTS), encoding="utf-8")
        extra = ["--set", "finetune.target_modules=attn"]
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main(["finetune", "--model", str(tiny_model), "--data", str(data), "--headless", "--run-dir",
              str(run_dir), *extra])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err
    assert not run_dir.exists()


def test_flags_become_settings_with_absolute_data_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    arguments = parser.parse_args(["--data", "docs", "--data", "hf:owner/name@train#text", "--mode", "chat",
                                   "--epochs", "2", "--lora-rank", "4", "--merge"])
    overrides = setting_overrides(arguments)
    assert json.loads(overrides["finetune.training_data"]) == [str(tmp_path / "docs"), "hf:owner/name@train#text"]
    assert overrides["finetune.training_mode"] == "chat"
    assert (overrides["finetune.epochs"], overrides["finetune.max_steps"]) == ("2", "0")
    assert overrides["finetune.lora_rank"] == "4" and overrides["finetune.merge_adapter"] == "true"
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "2", "--max-steps", "10"])
