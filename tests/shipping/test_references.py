"""One answer to "what does this model reference name?" for loading, compare, the registry and the model card."""

from __future__ import annotations

from pathlib import Path

import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.references import (
    KIND_DEMO,
    KIND_FOLDER,
    KIND_HUB,
    KIND_TRIAL,
    is_hub_id,
    is_hub_id_shape,
    normalise_model_reference,
    parse_model_reference,
    public_name,
)


@pytest.mark.parametrize("text", ["Qwen/Qwen2.5-0.5B-Instruct", "my-org/model_v1.5", "a/" + "x" * 96])
def test_hub_ids_by_the_hubs_rules(text: str) -> None:
    assert is_hub_id_shape(text) and is_hub_id(text)
    assert parse_model_reference(text).kind == KIND_HUB


@pytest.mark.parametrize(
    "text", ["gpt2", "a/b/c", "./org/model", "/org/model", "~/org/model", "alice/mo--del", "alice/-model",
             "alice/model.", "alice/mo del", "alice/" + "x" * 97, "alice/model.git", "C:\\org/model", "café/model"],
)
def test_not_hub_ids(text: str) -> None:
    assert not is_hub_id_shape(text)


def test_an_existing_folder_is_never_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "qwen").mkdir(parents=True)
    assert is_hub_id_shape("models/qwen") and not is_hub_id("models/qwen")
    reference = parse_model_reference("models/qwen")
    assert (reference.kind, reference.location) == (KIND_FOLDER, str(tmp_path / "models" / "qwen"))
    assert normalise_model_reference("models/qwen") == str(tmp_path / "models" / "qwen")


def test_kinds_of_local_folders(tmp_path: Path) -> None:
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{}")
    (export / "heretic.json").write_text("{}")
    assert parse_model_reference(str(adapter)).is_adapter and not parse_model_reference(str(adapter)).is_export
    assert parse_model_reference(str(export)).is_export and not parse_model_reference(str(export)).is_adapter
    assert parse_model_reference("demo").kind == KIND_DEMO


def test_trials_and_their_canonical_form(tmp_path: Path) -> None:
    reference = parse_model_reference(f"{tmp_path}/run#7")
    assert (reference.kind, reference.location, reference.trial) == (KIND_TRIAL, str(tmp_path / "run"), 7)
    assert reference.canonical == f"{tmp_path / 'run'}#7" and reference.label == "run#7"
    hashed = tmp_path / "folder#3"
    hashed.mkdir()
    assert parse_model_reference(str(hashed)).kind == KIND_FOLDER, "an existing path wins over the trial form"


def test_bad_references_say_which_forms_work() -> None:
    with pytest.raises(UserInputError, match="neither an existing path nor a valid Hugging Face hub id"):
        parse_model_reference("a/b/c")
    with pytest.raises(UserInputError, match="is empty"):
        parse_model_reference("  ")


def test_registry_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalise_model_reference("Qwen/Qwen3-4B") == "Qwen/Qwen3-4B"
    assert normalise_model_reference("demo") == "demo"
    assert normalise_model_reference("gpt2") == "gpt2", "a name that is not on this disk stays a name"
    assert normalise_model_reference("./model") == str(tmp_path / "model")


def test_public_names_hide_local_paths() -> None:
    assert public_name("/home/alice/models/qwen") == "qwen" and public_name("Qwen/Qwen3-4B") == "Qwen/Qwen3-4B"
