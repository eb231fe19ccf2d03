"""The model card says what was done with the run's numbers, tags what users search for, and leaks nothing local."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from huggingface_hub import ModelCard

from heretic_tui.core.models.references import public_name
from heretic_tui.core.shipping.hub import ensure_model_card
from heretic_tui.core.shipping.model_card import (
    MODEL_CARD_FILE,
    SHIPPED_CONFIG_FILE,
    copy_processor_files,
    shareable_config,
    write_model_card,
)
from heretic_tui.core.settings import Settings, render_config

BASE = "Qwen/Qwen2.5-0.5B-Instruct"


def abliteration_metadata(local_root: Path, source: str = BASE, adapter: bool = False) -> dict:
    return {
        "method": "abliteration",
        "format": "adapter" if adapter else "merged",
        "source_model": source,
        "source_location": str(local_root / "hf" / "snapshots" / "abc"),
        "run_dir": str(local_root / "runs" / "20250101-qwen"),
        "trial": 17,
        "parameters": {"direction_scope": "global", "direction_index": 14.25, "attention.max_weight": 1.1},
        "metrics": {"refusals": 3, "refusal_total": 100, "baseline_refusals": 97, "kl_divergence": 0.0812},
        "prompt_sources": {"bad_eval_prompts": str(local_root / "data" / "harmful.txt"),
                           "good_eval_prompts": "builtin:harmless@test"},
        "versions": {"torch": "2.13.0", "transformers": "5.24.0", "heretic-tui": "0.1.0", "peft": "not installed"},
    }


def run_settings_text(local_root: Path) -> str:
    settings = Settings()
    settings.model.model = str(local_root / "models" / "qwen")
    settings.prompts.bad_prompts = str(local_root / "data" / "harmful.csv#prompt")
    settings.prompts.good_prompts = "hf:mlabonne/harmless_alpaca@train#text"
    settings.output.runs_directory = str(local_root / "runs")
    settings.output.model_directories = [str(local_root / "models"), "relative/models"]
    return render_config(settings)


def test_abliteration_card_has_metrics_tags_origin_and_reproduction(tmp_path: Path) -> None:
    folder = tmp_path / ".export.partial-1"
    folder.mkdir()
    write_model_card(folder, abliteration_metadata(tmp_path), run_settings_text(tmp_path), name="qwen-heretic")
    card = (folder / MODEL_CARD_FILE).read_text(encoding="utf-8")
    data, body = ModelCard(card).data, ModelCard(card).text
    assert (data.library_name, data.base_model, data.pipeline_tag) == ("transformers", BASE, "text-generation")
    assert {"heretic", "abliterated", "uncensored"} <= set(data.tags) and "lora" not in data.tags
    assert "base_model_relation" not in data.to_dict(), "a merged model is not an adapter of its base"
    assert body.lstrip().startswith("# qwen-heretic\n"), "the final name, not the temporary folder's"
    assert "| Refusals on harmful evaluation prompts | 97/100 | 3/100 |" in body
    assert "| KL divergence from the original on harmless prompts (first token) | 0 (reference) | 0.0812 |" in body
    assert "[Qwen/Qwen2.5-0.5B-Instruct](https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct)" in body
    assert "trial 17" in body and "heretic-tui export my-run --trial 17 --output my-model\n" in body
    assert "--config heretic-config.toml" in body and "| direction_index | 14.2500 |" in body
    assert "`harmful.txt`" in body and "torch 2.13.0" in body and "not installed" not in body
    assert str(tmp_path) not in card, "no absolute local path in the card"
    assert not [path for path in folder.iterdir() if path.name.startswith(".")], "no temporary files left"


def test_shipped_config_keeps_settings_but_not_local_paths(tmp_path: Path) -> None:
    text = shareable_config(run_settings_text(tmp_path))
    assert str(tmp_path) not in text
    data = tomllib.loads(text)
    assert data["model"]["model"] == "qwen"
    assert data["prompts"]["bad_prompts"] == "harmful.csv#prompt"
    assert data["prompts"]["good_prompts"] == "hf:mlabonne/harmless_alpaca@train#text"
    assert data["output"]["model_directories"] == ["models", "relative/models"]
    assert data["optimization"]["trials"] == Settings().optimization.trials
    assert "# Allowed:" in text, "the help comments travel along"
    folder = tmp_path / "model"
    folder.mkdir()
    write_model_card(folder, abliteration_metadata(tmp_path), run_settings_text(tmp_path))
    assert (folder / SHIPPED_CONFIG_FILE).read_text(encoding="utf-8") == text


def test_fine_tuned_adapter_card(tmp_path: Path) -> None:
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    metadata = {
        "method": "finetune",
        "format": "adapter",
        "source_model": str(tmp_path / "exports" / "qwen-heretic"),
        "metrics": {"eval_loss_before": 2.5, "eval_loss_after": 1.75},
        "perplexity_before": 12.18,
        "perplexity_after": 5.75,
    }
    card = write_model_card(folder, metadata, None).read_text(encoding="utf-8")
    data = ModelCard(card).data
    assert data.library_name == "peft"
    assert data.base_model is None and "base_model:" not in card, "a local base model is not a hub id"
    assert {"fine-tuned", "lora"} <= set(data.tags) and "abliterated" not in data.tags
    assert "| Evaluation loss on held-out data | 2.5000 | 1.7500 |" in card
    assert "| Perplexity on held-out data | 12.1800 | 5.7500 |" in card
    assert "a local model (`qwen-heretic`)" in card and "AutoPeftModelForCausalLM" in card
    assert "heretic-tui finetune --headless\n" in card, "no config file, so no --config"
    assert str(tmp_path) not in card


def test_abliterated_adapter_of_the_demo_model(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    card = write_model_card(folder, abliteration_metadata(tmp_path, "demo", adapter=True), None).read_text()
    data = ModelCard(card).data
    assert data.library_name == "peft" and data.base_model is None and "lora" in data.tags
    assert "the built-in heretic-tui demo model" in card and "--adapter" in card


def test_upload_fallback_card_uses_the_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "Tiny"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "heretic.json").write_text(json.dumps(abliteration_metadata(tmp_path)), encoding="utf-8")
    card = ensure_model_card(folder).read_text(encoding="utf-8")
    assert "| Refusals on harmful evaluation prompts | 97/100 | 3/100 |" in card and "# Tiny" in card
    assert not (folder / SHIPPED_CONFIG_FILE).exists()
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}", encoding="utf-8")
    card = ensure_model_card(bare).read_text(encoding="utf-8")
    assert "A model made from a model with heretic-tui." in card and "abliterated" not in card


def test_processor_files_are_copied_without_overwriting(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("preprocessor_config.json", "chat_template.json", "generation_config.json"):
        (source / name).write_text(json.dumps({"from": "source", "name": name}), encoding="utf-8")
    destination = tmp_path / "destination"
    destination.mkdir()
    (destination / "generation_config.json").write_text('{"from": "export"}', encoding="utf-8")
    assert copy_processor_files(str(source), destination) == ["preprocessor_config.json", "chat_template.json"]
    assert json.loads((destination / "generation_config.json").read_text()) == {"from": "export"}
    assert copy_processor_files("not-a/cached-model", destination) == []
    assert copy_processor_files(str(tmp_path / "gone"), destination) == []


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("/home/alice/models/qwen", "qwen"), ("~/data/a.csv#text", "a.csv#text"), ("C:\\models\\llama", "llama"),
     ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"), ("demo", "demo"), ("builtin:harmful@test", "builtin:harmful@test")],
)
def test_public_names(reference: str, expected: str) -> None:
    assert public_name(reference) == expected
