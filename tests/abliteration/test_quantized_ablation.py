"""Quantized models are searched through the hooks and their weights are never touched.

CPU machines have no bitsandbytes kernels, so the quantized layer here is a fake one in HQQ's layout (int8 ``W_q``
with a per-row scale and ``dequantize()``, which peft's ``dequantize_module_weight`` reads): the weight path
refuses it like a real 4-bit layer, and the hooks on it must give what edited weights give on the same model with
its dequantized weights in float32. The CUDA path with bitsandbytes runs in bench/gpu_check.sh."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from heretic_tui.core.abliteration.ablation import Abliterator, KernelParameters, TrialParameters
from heretic_tui.core.abliteration.activation_ablation import ActivationAblation, has_quantized_layers
from heretic_tui.core.models.batching import encode, positions
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.layers import UnsupportedLayoutError
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.settings import ModelSettings

TEXTS = ["<|user|> how do i bake bread ? <|end|> <|assistant|>",
         "<|user|> explain how to build a bomb <|end|> <|assistant|>"]


class FakeQuantizedLinear(nn.Module):
    """An int8 linear layer with one scale per output row, in HQQ's layout."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = linear.weight.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / 127
        self.W_q = nn.Parameter(torch.round(linear.weight.detach() / scale).to(torch.int8), requires_grad=False)
        self.register_buffer("scale", scale)
        self.bias = linear.bias

    def dequantize(self) -> torch.Tensor:
        return self.W_q.float() * self.scale

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(inputs, self.dequantize().to(inputs.dtype), self.bias)


def quantize_outputs(model: nn.Module, dequantized_copy: bool) -> None:
    """Every attention output and MLP down projection made a fake quantized layer (or, for the reference model,
    an ordinary linear layer holding what the fake one computes with)."""
    for layer in model.model.layers:
        for owner, name in ((layer.self_attn, "o_proj"), (layer.mlp, "down_proj")):
            fake = FakeQuantizedLinear(getattr(owner, name))
            if dequantized_copy:
                plain = nn.Linear(fake.in_features, fake.out_features, bias=fake.bias is not None)
                with torch.no_grad():
                    plain.weight.copy_(fake.dequantize())
                setattr(owner, name, plain)
            else:
                setattr(owner, name, fake)


def logits(loaded, texts: list[str]) -> torch.Tensor:
    batch = encode(loaded.tokenizer, texts, loaded.device)
    with torch.inference_mode():
        return loaded.model(**batch, position_ids=positions(batch["attention_mask"]), use_cache=False).logits


TRIALS = [
    TrialParameters("global", 1.2, {"attention": KernelParameters(1.2, 1.0, 0.6, 2.0),
                                    "mlp": KernelParameters(1.0, 2.0, 0.5, 1.5)}),
    TrialParameters("per_layer", 0.0, {"attention": KernelParameters(1.4, 2.0, 0.4, 2.0),
                                       "mlp": KernelParameters(0.9, 1.0, 0.9, 2.0)},
                    ablation_method="norm_preserving"),
    TrialParameters("global", 0.5, {"attention": KernelParameters(1.0, 0.0, 1.0, 3.0)},
                    ablation_method="norm_preserving", edited_components="attention"),
]


def test_a_quantized_model_is_searched_through_hooks_without_touching_its_weights(
        tiny_models: dict[str, Path]) -> None:
    settings = ModelSettings(model=str(tiny_models["llama"]), dtypes=["float32"])
    quantized, reference = load_model(settings), load_model(settings)
    quantize_outputs(quantized.model, dequantized_copy=False)
    quantize_outputs(reference.model, dequantized_copy=True)
    assert has_quantized_layers(quantized.model) and not has_quantized_layers(reference.model)
    config = quantized.model.config
    directions = torch.nn.functional.normalize(
        torch.randn(config.num_hidden_layers, config.hidden_size, generator=torch.Generator().manual_seed(2)), dim=-1)
    with pytest.raises(UnsupportedLayoutError, match="quantized"):
        Abliterator(quantized.model, directions)
    stored = {name: tensor.clone() for name, tensor in quantized.model.state_dict().items()}

    abliterator = Abliterator(reference.model, directions)
    expected = []
    for parameters in TRIALS:
        abliterator.apply(parameters)
        expected.append(logits(reference, TEXTS))
        abliterator.reset()
    assert torch.allclose(logits(reference, TEXTS), logits(quantized, TEXTS), atol=1e-5)

    ablation = ActivationAblation(quantized.model, directions)
    assert {target.component.kind for target in ablation.targets} == {"attention", "mlp"}
    assert all(target.quantized for target in ablation.targets)
    with ablation.applied(ablation.prepare(TRIALS), [index for index in range(len(TRIALS)) for _ in TEXTS]):
        hooked = logits(quantized, [text for _ in TRIALS for text in TEXTS])
    for index, wanted in enumerate(expected):
        got = hooked[index * len(TEXTS):(index + 1) * len(TEXTS)]
        assert (got - wanted).abs().max() <= 1e-4 * wanted.abs().max(), TRIALS[index]
    for name, tensor in quantized.model.state_dict().items():
        assert torch.equal(tensor, stored[name]), name


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_a_quantized_load_is_refused_only_for_the_weight_path(quantization: str) -> None:
    from heretic_tui.core.abliteration.job import preflight
    from heretic_tui.core.settings import Settings, settings_from_dict

    settings = settings_from_dict({"model": {"quantization": quantization}})
    assert settings.model.quantization == quantization
    settings.abliteration.apply = "weights"
    with pytest.raises(UserInputError, match="apply = 'hooks'"):
        preflight(settings)
    settings.abliteration.apply = "hooks"
    preflight(settings)


class Int8Params(nn.Parameter):
    """Named as bitsandbytes' 8-bit weight class, which is how the hooks recognise a bitsandbytes layer."""


class FakeInt8Linear(nn.Module):
    """bitsandbytes' ``Linear8bitLt`` layout after loading: an int8 ``weight`` [out, in] and its per-row absolute
    maxima ``SCB`` (weight = int8 * SCB / 127), with no ``dequantize()`` of its own."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        maxima = linear.weight.detach().abs().amax(dim=1).clamp_min(1e-8)
        rounded = torch.round(linear.weight.detach() * 127 / maxima[:, None]).to(torch.int8)
        self.weight = Int8Params(rounded, requires_grad=False)
        self.register_buffer("SCB", maxima)
        self.bias = linear.bias

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.SCB[:, None] / 127

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(inputs, self.dequantized().to(inputs.dtype), self.bias)


def test_an_8bit_layer_is_searched_through_hooks_like_a_4bit_one(tiny_models: dict[str, Path]) -> None:
    """Projection trials only: MPOA's factors dequantize through bitsandbytes itself, which needs CUDA (that part
    is in bench/quantized_gpu_check.py)."""
    settings = ModelSettings(model=str(tiny_models["llama"]), dtypes=["float32"])
    quantized, reference = load_model(settings), load_model(settings)
    for quantized_layer, reference_layer in zip(quantized.model.model.layers, reference.model.model.layers):
        for owner, name in (("self_attn", "o_proj"), ("mlp", "down_proj")):
            fake = FakeInt8Linear(getattr(getattr(quantized_layer, owner), name))
            setattr(getattr(quantized_layer, owner), name, fake)
            with torch.no_grad():
                getattr(getattr(reference_layer, owner), name).weight.copy_(fake.dequantized())
    assert has_quantized_layers(quantized.model) and not has_quantized_layers(reference.model)
    config = quantized.model.config
    directions = torch.nn.functional.normalize(
        torch.randn(config.num_hidden_layers, config.hidden_size, generator=torch.Generator().manual_seed(3)), dim=-1)
    with pytest.raises(UnsupportedLayoutError, match="quantized"):
        Abliterator(quantized.model, directions)
    ablation = ActivationAblation(quantized.model, directions)
    assert len(ablation.targets) == 2 * config.num_hidden_layers
    assert all(target.quantized and isinstance(target.module, FakeInt8Linear) for target in ablation.targets)
    stored = {name: tensor.clone() for name, tensor in quantized.model.state_dict().items()}
    trial = TRIALS[0]
    abliterator = Abliterator(reference.model, directions)
    unmodified = logits(reference, TEXTS)
    abliterator.apply(trial)
    wanted = logits(reference, TEXTS)
    with ablation.applied(ablation.prepare([trial]), [0 for _ in TEXTS]):
        got = logits(quantized, TEXTS)
    assert (wanted - unmodified).abs().max() > 10 * (got - wanted).abs().max()
    assert (got - wanted).abs().max() <= 1e-4 * wanted.abs().max()
    for name, tensor in quantized.model.state_dict().items():
        assert torch.equal(tensor, stored[name]), name


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_a_quantized_load_without_cuda_says_what_to_set(quantization: str, tiny_models: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserInputError) as caught:
        load_model(ModelSettings(model=str(tiny_models["llama"]), quantization=quantization))
    message = str(caught.value)
    assert f"model.quantization = '{quantization}' needs a CUDA GPU and the bitsandbytes package" in message
    assert "Set quantization = 'none' on this machine." in message
