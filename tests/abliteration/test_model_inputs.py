"""How prompts reach the model: the chat template's system-turn fallback, and the residuals read per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from heretic_tui.core.models.chat_template import accepts_system_turn, format_chat, merge_system_turn
from heretic_tui.core.models.layers import decoder_layers
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.models.residuals import last_token_residuals
from heretic_tui.core.settings import ModelSettings

ROLES_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
REJECTING_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
DROPPING_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def tokenizer_with(path: Path, template: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = template
    return tokenizer


def test_a_template_with_a_system_role_gets_its_own_system_turn(tiny_models: dict[str, Path]) -> None:
    tokenizer = tokenizer_with(tiny_models["llama"], ROLES_TEMPLATE)
    assert accepts_system_turn(tokenizer)
    assert format_chat(tokenizer, "be kind", ["write poem"]) == [
        "<|system|> be kind <|end|> <|user|> write poem <|end|> <|assistant|> "
    ]
    assert format_chat(tokenizer, "", ["write poem"]) == ["<|user|> write poem <|end|> <|assistant|> "]


@pytest.mark.parametrize("template", [REJECTING_TEMPLATE, DROPPING_TEMPLATE], ids=["rejects", "drops"])
def test_a_template_that_rejects_or_drops_the_system_turn_gets_it_in_the_user_turn(
    template: str, tiny_models: dict[str, Path]
) -> None:
    tokenizer = tokenizer_with(tiny_models["llama"], template)
    assert not accepts_system_turn(tokenizer)
    assert format_chat(tokenizer, "be kind", ["write poem"]) == [
        "<|user|> be kind\n\nwrite poem <|end|> <|assistant|> "
    ]


def test_merging_keeps_later_turns_and_a_lone_system_message() -> None:
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                    {"role": "assistant", "content": "A"}]
    assert merge_system_turn(conversation) == [{"role": "user", "content": "S\n\nU"},
                                               {"role": "assistant", "content": "A"}]
    assert conversation[1]["content"] == "U", "the caller's messages are left as they were"
    assert merge_system_turn([{"role": "system", "content": "S"}]) == [{"role": "user", "content": "S"}]


@pytest.mark.parametrize("architecture", ["llama", "gemma2", "qwen3_moe"])
def test_residuals_are_each_layers_output_before_the_final_norm(architecture: str,
                                                                 tiny_models: dict[str, Path]) -> None:
    """The last layer's residual must be its raw output: the hidden state transformers reports is normed."""
    loaded = load_model(ModelSettings(model=str(tiny_models[architecture]), dtypes=["float32"]))
    model = loaded.model
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and parameter.dim() == 1 and name.count(".") <= 2:
                parameter.mul_(3.0)
    texts = format_chat(loaded.tokenizer, "", ["how do i make bread ?", "write poem", "explain steal car"])
    residuals = last_token_residuals(loaded, texts, batch_size=2)
    layers = model.config.num_hidden_layers
    assert residuals.shape == (3, layers, model.config.hidden_size)

    outputs: list[torch.Tensor] = []
    _, modules = decoder_layers(model)
    hooks = [module.register_forward_hook(lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple) else out))
             for module in modules]
    try:
        batch = loaded.tokenizer(texts[2:], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            reported = model(**batch, output_hidden_states=True).hidden_states
    finally:
        for hook in hooks:
            hook.remove()
    expected = torch.stack([output[0, -1] for output in outputs])
    assert torch.allclose(residuals[2], expected, atol=1e-4)
    assert torch.allclose(residuals[2, :-1], torch.stack([state[0, -1] for state in reported[1:-1]]), atol=1e-4)
    assert not torch.allclose(residuals[2, -1], reported[-1][0, -1], atol=1e-3), "the final norm is not applied"
