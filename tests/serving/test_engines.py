"""Which engine serves a model: vLLM for plain models when it is there with a GPU, transformers for the rest."""

from __future__ import annotations

import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.references import ModelReference
from heretic_tui.core.serving import engines
from heretic_tui.core.serving.engines import ENGINE_TRANSFORMERS, ENGINE_VLLM, engine_for
from heretic_tui.core.settings import Settings

PLAIN = ModelReference("owner/model", "hub", "owner/model")
TRIAL = ModelReference("/runs/x#3", "trial", "/runs/x", 3)


def settings_with(engine: str) -> Settings:
    settings = Settings()
    settings.serve.serve_engine = engine
    return settings


@pytest.mark.parametrize(("choice", "installed", "cuda", "plain", "trial"), [
    ("auto", True, True, ENGINE_VLLM, ENGINE_TRANSFORMERS),
    ("auto", True, False, ENGINE_TRANSFORMERS, ENGINE_TRANSFORMERS),
    ("auto", False, True, ENGINE_TRANSFORMERS, ENGINE_TRANSFORMERS),
    ("transformers", True, True, ENGINE_TRANSFORMERS, ENGINE_TRANSFORMERS),
    ("vllm", True, False, ENGINE_VLLM, ENGINE_TRANSFORMERS),
])
def test_the_engine_choice(monkeypatch: pytest.MonkeyPatch, choice: str, installed: bool, cuda: bool, plain: str,
                           trial: str) -> None:
    monkeypatch.setattr(engines, "vllm_installed", lambda: installed)
    assert engine_for(PLAIN, settings_with(choice), lambda: cuda) == plain
    assert engine_for(TRIAL, settings_with(choice), lambda: cuda) == trial


def test_asking_for_vllm_without_it_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "vllm_installed", lambda: False)
    with pytest.raises(UserInputError, match="pip install vllm"):
        engine_for(PLAIN, settings_with("vllm"), lambda: True)
