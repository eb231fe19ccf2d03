"""The wizard's summary shows the plan before any download, and a button applies a change that makes it fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tui_helpers import FixedResourceProbe, settle, wait_for

from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.wizard import WizardScreen

pytestmark = pytest.mark.anyio

LLAMA_70B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192,
             "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8, "intermediate_size": 28672,
             "vocab_size": 128256, "torch_dtype": "bfloat16", "tie_word_embeddings": False}


async def test_a_model_too_big_for_the_gpu_gets_a_4_bit_button_that_makes_it_fit(tmp_path: Path) -> None:
    folder = tmp_path / "llama-70b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_70B))
    settings = Settings()
    settings.output.runs_directory = str(tmp_path / "runs")
    app = HereticApp(settings=settings, resource_probe=FixedResourceProbe())
    async with app.run_test(size=(160, 60)) as pilot:
        wizard = WizardScreen(settings, model=str(folder))
        await app.push_screen(wizard)
        await pilot.press("a")
        await wait_for(pilot, lambda: wizard.step == "advanced", "the advanced form")
        await settle(pilot)
        wizard.action_next()
        plan = await wait_for(pilot, lambda: "does not fit" in str(wizard.query_one("#summary-plan").render()),
                              "a plan that says the 70B model does not fit the fixed probe's 80 GB H100")
        assert plan
        buttons = {button.id: str(button.label) for button in wizard.query("#plan-offers Button")}
        four_bit = next(key for key, label in buttons.items() if "4 bit" in label)
        wizard.query_one(f"#{four_bit}").press()
        await wait_for(pilot, lambda: "fits:" in str(wizard.query_one("#summary-plan").render()),
                       "the plan after applying 4-bit loading")
        assert wizard.current_settings().model.quantization == "4bit"
        assert "quantization 4bit" in str(wizard.query_one("#summary-text").render())
