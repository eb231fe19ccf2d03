"""The model browser: a Hugging Face cache and a model folder built by the test, and the outputs of real runs (an
export, a LoRA adapter, a merged model) placed from the recording, all read without loading weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tui_helpers import screen_words, wait_for, wait_for_text
from model_folders import SNAPSHOT, build_hub_cache, write_model_files
from recorded_runs import Recording, RecordedRun

from heretic_tui.core.models.browser import (
    SOURCE_FOLDER,
    SOURCE_HUB_CACHE,
    SOURCE_RUN,
    count_parameters,
    describe_model,
    find_models,
    scan_run_outputs,
)
from heretic_tui.core.runs.events import Metrics
from heretic_tui.core.settings import Settings, load_settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.model_actions import ModelActionsScreen
from heretic_tui.tui.screens.model_browser import ModelBrowserScreen
from heretic_tui.tui.screens.finetune_wizard import FinetuneWizardScreen
from heretic_tui.tui.screens.upload import UploadScreen
from heretic_tui.tui.screens.wizard import WizardScreen

pytestmark = pytest.mark.anyio

STUDY = "20260921-141315-demo"
FINETUNE = "20260921-150000-finetune"


@pytest.fixture
def runs_with_outputs(recorded: Recording, runs_folder: Path) -> dict[str, RecordedRun]:
    """A real study with its export of the chosen trial, and a real fine-tune of that export: its LoRA adapter,
    its merged model and its trainer checkpoints (which hold adapters too)."""
    return recorded.place_together({"finished": STUDY, "finetune": FINETUNE}, runs_folder)


@pytest.fixture
def model_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings,
                 runs_with_outputs: dict[str, RecordedRun]) -> Settings:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    build_hub_cache(cache, "acme/tiny-chat")
    shelf = tmp_path / "shelf"
    write_model_files(shelf / "base-model", architecture="MistralForCausalLM", template=False, dtype=np.float32)
    settings.output.model_directories = [str(shelf)]
    return settings


def export_name(runs: dict[str, RecordedRun]) -> str:
    report = runs["finished"].report
    assert report is not None
    return f"{STUDY}/exports/trial-{report['chosen_trial']}"


def test_parameters_and_dtype_come_from_the_safetensors_header(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write_model_files(folder, architecture="LlamaForCausalLM", template=True)
    assert count_parameters(folder) == (100 * 16 * 2 + 16, "float16")
    info = describe_model(folder)
    assert info.architecture == "LlamaForCausalLM" and info.has_chat_template and info.has_weights
    assert info.size_bytes > 100 * 16 * 2 * 2


def test_an_adapter_is_described_from_its_own_files(runs_with_outputs: dict[str, RecordedRun]) -> None:
    finetune = runs_with_outputs["finetune"]
    settings = load_settings(finetune.path / "config.toml", environ={}, search_default_paths=False)
    plan = next(item.values for item in finetune.events if isinstance(item, Metrics) and item.name == "plan")
    info = describe_model(finetune.path / "adapter")
    assert info.is_adapter and info.base_model == settings.model.model, "the base is the model it was trained on"
    assert info.architecture == f"LORA adapter, rank {settings.finetune.lora_rank}"
    assert info.parameter_count == plan["trainable_parameters"], "its own weights are what training changed"
    assert info.has_weights and info.size_bytes > 0


def test_run_outputs_list_exports_and_adapters_but_not_trainer_checkpoints(
    runs_with_outputs: dict[str, RecordedRun], runs_folder: Path
) -> None:
    assert list((runs_with_outputs["finetune"].path / "checkpoints").glob("checkpoint-*/adapter_config.json"))
    names = {model.name: model for model in scan_run_outputs(runs_folder)}
    assert set(names) == {export_name(runs_with_outputs), f"{FINETUNE}/adapter", f"{FINETUNE}/merged"}
    assert names[f"{FINETUNE}/adapter"].is_adapter
    assert not names[f"{FINETUNE}/merged"].is_adapter and not names[export_name(runs_with_outputs)].is_adapter


def test_every_place_is_scanned(model_places: Settings) -> None:
    models = {model.name: model for model in find_models(model_places)}
    assert models["acme/tiny-chat"].source == SOURCE_HUB_CACHE
    assert models["acme/tiny-chat"].parameter_count == 3216
    assert models["acme/tiny-chat"].size_bytes > 6000, "sizes follow the cache's symlinks to the blobs"
    assert models["shelf/base-model"].source == SOURCE_FOLDER
    assert not models["shelf/base-model"].has_chat_template
    assert models["shelf/base-model"].dtype == "float32"
    assert models[f"{FINETUNE}/adapter"].source == SOURCE_RUN


async def test_browser_lists_and_opens_a_model(model_places: Settings, runs_with_outputs: dict[str, RecordedRun],
                                               make_app: Callable[..., HereticApp]) -> None:
    app = make_app(settings=model_places)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelBrowserScreen)
                       and app.screen.query_one("#models-table").row_count == 5,
                       "the cache model, the shelf model, the study's export and the fine-tune's adapter and merged "
                       "model are listed")
        await wait_for_text(pilot, "acme/tiny-chat", "shelf/base-model", export_name(runs_with_outputs), "3.2K",
                            "float16", message="the table draws the models with their sizes and types")
        browser = app.screen
        names = [browser.models[str(key.value)].name for key in browser.query_one("#models-table").rows]
        browser.query_one("#models-table").focus()
        await pilot.press("ctrl+home", *(["down"] * names.index("acme/tiny-chat")), "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelActionsScreen), "Enter opens the model's actions")
        await wait_for_text(pilot, "Chat template yes", message="the actions screen describes the model")
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneWizardScreen), "f opens the fine-tune wizard")
        assert app.screen.values["model.model"].endswith(SNAPSHOT)
        await pilot.press("escape", "a")
        await wait_for(pilot, lambda: type(app.screen) is WizardScreen, "a opens the abliteration wizard")
        assert app.screen.values["model.model"].endswith(SNAPSHOT)


async def test_a_model_folder_on_the_command_line_opens_its_actions(
    tmp_path: Path, make_app: Callable[..., HereticApp]
) -> None:
    folder = tmp_path / "my-model"
    write_model_files(folder, architecture="Qwen3ForCausalLM", template=True)
    app = make_app(model_path=str(folder))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelActionsScreen), "the model's actions open")
        await wait_for_text(pilot, "Qwen3ForCausalLM", "Abliterate", "Upload",
                            message="the actions screen names the architecture and offers its actions")


async def test_an_adapter_offers_what_an_adapter_can_do(
    model_places: Settings, runs_with_outputs: dict[str, RecordedRun], make_app: Callable[..., HereticApp]
) -> None:
    adapter = runs_with_outputs["finetune"].path / "adapter"
    base = describe_model(adapter).base_model
    assert base is not None
    app = make_app(settings=model_places)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelBrowserScreen)
                       and app.screen.query_one("#models-table").row_count == 5, "five models listed")
        browser = app.screen
        names = [browser.models[str(key.value)].name for key in browser.query_one("#models-table").rows]
        browser.query_one("#models-table").focus()
        await pilot.press("ctrl+home", *(["down"] * names.index(f"{FINETUNE}/adapter")))
        await wait_for(pilot, lambda: "Kind LORA adapter" in screen_words(app) and "Base model" in screen_words(app),
                       "the detail pane says it is an adapter and names its base model")
        text = await wait_for_text(pilot, f"adapter on {Path(base).name}", message="the table names the adapter's base")
        footer = text.splitlines()[-1]
        assert "Upload" in footer and "Abliterate" not in footer and "Chat" not in footer
        await pilot.press("a")
        assert app.screen is browser, "an adapter is not abliterated; its base model or a merged export is"
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen)
                       and app.screen.query_one("#upload-folder").value == str(adapter),
                       "u opens the upload of the adapter")
