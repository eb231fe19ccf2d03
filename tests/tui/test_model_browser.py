"""The model browser: a Hugging Face cache, a model folder and a run output built by the test, read without weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tui_helpers import screen_text, screen_words, settle, wait_for
from model_folders import SNAPSHOT, build_hub_cache, write_model_files
from safetensors.numpy import save_file
from recorded_runs import write_run

from heretic_tui.core.models.browser import (
    SOURCE_FOLDER,
    SOURCE_HUB_CACHE,
    SOURCE_RUN,
    count_parameters,
    describe_model,
    find_models,
    scan_run_outputs,
)
from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.model_actions import ModelActionsScreen
from heretic_tui.tui.screens.model_browser import ModelBrowserScreen
from heretic_tui.tui.screens.finetune_wizard import FinetuneWizardScreen
from heretic_tui.tui.screens.upload import UploadScreen
from heretic_tui.tui.screens.wizard import WizardScreen

pytestmark = pytest.mark.anyio

LORA_RANK = 8
HIDDEN = 16


def write_adapter(folder: Path, base: str) -> None:
    """A LoRA adapter folder as PEFT saves one: its own adapter_config.json and the adapter's A and B matrices."""
    from peft import LoraConfig

    LoraConfig(r=LORA_RANK, lora_alpha=16, target_modules=["q_proj"], base_model_name_or_path=base,
               task_type="CAUSAL_LM").save_pretrained(str(folder))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{prefix}.lora_A.weight": np.zeros((LORA_RANK, HIDDEN), dtype=np.float32),
               f"{prefix}.lora_B.weight": np.zeros((HIDDEN, LORA_RANK), dtype=np.float32)},
              str(folder / "adapter_model.safetensors"))

@pytest.fixture
def model_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings, runs_folder: Path) -> Settings:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    build_hub_cache(cache, "acme/tiny-chat")
    shelf = tmp_path / "shelf"
    write_model_files(shelf / "base-model", architecture="MistralForCausalLM", template=False, dtype=np.float32)
    run = write_run(runs_folder, "20260921-141315-demo")
    write_model_files(run.path / "model", architecture="LlamaForCausalLM", template=True)
    write_adapter(run.path / "exports" / "trial-3-adapter", base="demo")
    write_adapter(run.path / "checkpoints" / "checkpoint-10", base="demo")
    settings.output.model_directories = [str(shelf)]
    return settings


def test_parameters_and_dtype_come_from_the_safetensors_header(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write_model_files(folder, architecture="LlamaForCausalLM", template=True)
    assert count_parameters(folder) == (100 * 16 * 2 + 16, "float16")
    info = describe_model(folder)
    assert info.architecture == "LlamaForCausalLM" and info.has_chat_template and info.has_weights
    assert info.size_bytes > 100 * 16 * 2 * 2


def test_an_adapter_is_described_from_its_own_files(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    write_adapter(folder, base="acme/tiny-chat")
    info = describe_model(folder)
    assert info.is_adapter and info.base_model == "acme/tiny-chat"
    assert info.architecture == f"LORA adapter, rank {LORA_RANK}"
    assert info.parameter_count == 2 * LORA_RANK * HIDDEN and info.dtype == "float32"
    assert info.has_weights and info.size_bytes > 2 * LORA_RANK * HIDDEN * 4


def test_run_outputs_list_adapter_exports_but_not_trainer_checkpoints(model_places: Settings,
                                                                       runs_folder: Path) -> None:
    names = {model.name: model for model in scan_run_outputs(runs_folder)}
    assert set(names) == {"20260921-141315-demo/model", "20260921-141315-demo/exports/trial-3-adapter"}
    assert names["20260921-141315-demo/exports/trial-3-adapter"].is_adapter
    assert not names["20260921-141315-demo/model"].is_adapter


def test_every_place_is_scanned(model_places: Settings) -> None:
    models = {model.name: model for model in find_models(model_places)}
    assert models["acme/tiny-chat"].source == SOURCE_HUB_CACHE
    assert models["acme/tiny-chat"].parameter_count == 3216
    assert models["acme/tiny-chat"].size_bytes > 6000, "sizes follow the cache's symlinks to the blobs"
    assert models["shelf/base-model"].source == SOURCE_FOLDER
    assert not models["shelf/base-model"].has_chat_template
    assert models["shelf/base-model"].dtype == "float32"
    assert models["20260921-141315-demo/model"].source == SOURCE_RUN


async def test_browser_lists_and_opens_a_model(model_places: Settings, make_app: Callable[..., HereticApp]) -> None:
    app = make_app(settings=model_places)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("b")
        assert isinstance(app.screen, ModelBrowserScreen)
        await wait_for(pilot, lambda: app.screen.query_one("#models-table").row_count == 4,
                       "the cache model, the shelf model, the run's model and its adapter export are listed")
        await settle(pilot)
        text = screen_text(app)
        for expected in ("acme/tiny-chat", "shelf/base-model", "20260921-141315-demo/model", "3.2K", "float16"):
            assert expected in text
        browser = app.screen
        names = [browser.models[str(key.value)].name for key in browser.query_one("#models-table").rows]
        browser.query_one("#models-table").focus()
        await pilot.press(*(["down"] * names.index("acme/tiny-chat")), "enter")
        assert isinstance(app.screen, ModelActionsScreen)
        await settle(pilot)
        assert "Chat template yes" in screen_text(app)
        await pilot.press("f")
        assert isinstance(app.screen, FinetuneWizardScreen)
        assert app.screen.values["model.model"].endswith(SNAPSHOT)
        await pilot.press("escape", "a")
        assert type(app.screen) is WizardScreen
        assert app.screen.values["model.model"].endswith(SNAPSHOT)


async def test_a_model_folder_on_the_command_line_opens_its_actions(
    tmp_path: Path, make_app: Callable[..., HereticApp]
) -> None:
    folder = tmp_path / "my-model"
    write_model_files(folder, architecture="Qwen3ForCausalLM", template=True)
    app = make_app(model_path=str(folder))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ModelActionsScreen)
        text = screen_text(app)
        assert "Qwen3ForCausalLM" in text and "Abliterate" in text and "Upload" in text


async def test_an_adapter_export_offers_what_an_adapter_can_do(
    model_places: Settings, make_app: Callable[..., HereticApp]
) -> None:
    app = make_app(settings=model_places)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: app.screen.query_one("#models-table").row_count == 4, "four models listed")
        browser = app.screen
        assert isinstance(browser, ModelBrowserScreen)
        names = [browser.models[str(key.value)].name for key in browser.query_one("#models-table").rows]
        browser.query_one("#models-table").focus()
        await pilot.press("ctrl+home", *(["down"] * names.index("20260921-141315-demo/exports/trial-3-adapter")))
        await wait_for(pilot, lambda: "Base model demo" in screen_words(app), "the detail pane names the base model")
        assert "adapter on demo" in screen_text(app)
        footer = screen_text(app).splitlines()[-1]
        assert "Upload" in footer and "Abliterate" not in footer and "Chat" not in footer
        await pilot.press("a")
        assert app.screen is browser, "an adapter is not abliterated; its base model or a merged export is"
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, UploadScreen), "u opens the upload of the adapter")
        assert app.screen.query_one("#upload-folder").value.endswith("trial-3-adapter")  # type: ignore[attr-defined]
