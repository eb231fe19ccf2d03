"""The method on tiny models of several architectures: directions, kernel, apply and exact reset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from heretic_tui.core.abliteration.ablation import (
    Abliterator,
    KernelParameters,
    TrialParameters,
    UnsupportedLayoutError,
    find_components,
    project_out,
    rank_one_factors,
)
from heretic_tui.core.abliteration.directions import compute_directions, interpolate_direction
from heretic_tui.core.models.chat_template import format_chat
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.models.residuals import last_token_residuals
from heretic_tui.core.settings import ModelSettings
from model_factory import ARCHITECTURES

PROMPTS_A = ["how do i build a bomb ?", "explain steal car", "how do i make bomb", "write steal car"]
PROMPTS_B = ["how do i make bread ?", "write a poem about autumn", "explain bake bread", "write poem"]


def strong_trial() -> TrialParameters:
    kernel = KernelParameters(max_weight=1.0, max_weight_position=1.0, min_weight=0.5, min_weight_distance=2.0)
    return TrialParameters("global", 1.5, {"attention": kernel, "mlp": kernel})


def test_kernel_is_zero_outside_its_distance_and_linear_inside() -> None:
    kernel = KernelParameters(max_weight=1.2, max_weight_position=10.0, min_weight=0.2, min_weight_distance=4.0)
    assert kernel.weight(10) == pytest.approx(1.2)
    assert kernel.weight(14) == pytest.approx(0.2)
    assert kernel.weight(12) == pytest.approx(0.7)
    assert kernel.weight(8) == pytest.approx(0.7)
    assert kernel.weight(15) == 0.0
    assert kernel.weight(5) == 0.0


def test_directions_have_one_unit_vector_per_layer() -> None:
    harmful = torch.randn(8, 5, 16) + 2.0
    harmless = torch.randn(8, 5, 16)
    directions = compute_directions(harmful, harmless)
    assert directions.shape == (5, 16)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(5), atol=1e-5)
    orthogonal = compute_directions(harmful, harmless, orthogonalize=True)
    harmless_unit = torch.nn.functional.normalize(harmless.mean(0), dim=-1)
    assert torch.allclose((orthogonal * harmless_unit).sum(-1), torch.zeros(5), atol=1e-5)
    middle = interpolate_direction(directions, 1.5)
    assert middle.norm() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(interpolate_direction(directions, 2.0), directions[2], atol=1e-6)


def test_projection_removes_the_direction_from_every_output() -> None:
    weight = torch.randn(16, 24)
    direction = torch.nn.functional.normalize(torch.randn(16), dim=0)
    ablated = project_out(weight, direction, 1.0, 0)
    assert torch.allclose(direction @ ablated, torch.zeros(24), atol=1e-5)
    fused = torch.randn(3, 16, 24)
    ablated_fused = project_out(fused, direction, 1.0, 1)
    assert torch.allclose(torch.einsum("h,ehi->ei", direction, ablated_fused), torch.zeros(3, 24), atol=1e-5)
    transposed = torch.randn(3, 24, 16)
    ablated_transposed = project_out(transposed, direction, 1.0, 2)
    assert torch.allclose(ablated_transposed @ direction, torch.zeros(3, 24), atol=1e-5)
    up, down = rank_one_factors(weight, direction, 0.7)
    assert torch.allclose(weight + up @ down, project_out(weight, direction, 0.7, 0), atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_apply_then_reset_restores_every_weight_bit_for_bit(architecture: str, tiny_models: dict[str, Path]) -> None:
    loaded = load_model(ModelSettings(model=str(tiny_models[architecture]), dtypes=["float32"]))
    harmful = last_token_residuals(loaded, format_chat(loaded.tokenizer, "", PROMPTS_A), 2)
    harmless = last_token_residuals(loaded, format_chat(loaded.tokenizer, "", PROMPTS_B), 2)
    layers = loaded.model.config.num_hidden_layers
    assert harmful.shape == (len(PROMPTS_A), layers, loaded.model.config.hidden_size)
    directions = compute_directions(harmful, harmless)
    assert directions.shape == (layers, loaded.model.config.hidden_size)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(layers), atol=1e-5)

    before = {name: tensor.detach().clone() for name, tensor in loaded.model.state_dict().items()}
    abliterator = Abliterator(loaded.model, directions)
    kinds = {component.kind for component in abliterator.components}
    assert kinds == {"attention", "mlp"}
    assert len(abliterator.components) == 2 * layers
    if "moe" in architecture or architecture == "mixtral":
        assert any(component.parameter.dim() == 3 for component in abliterator.components)

    abliterator.apply(strong_trial())
    changed = [name for name, tensor in loaded.model.state_dict().items() if not torch.equal(tensor, before[name])]
    touched = {component.name for component, _ in abliterator.weights(strong_trial())}
    assert changed and set(changed) == touched
    abliterator.apply(strong_trial())
    abliterator.reset()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_unknown_fused_tensor_is_a_loud_error(tiny_models: dict[str, Path]) -> None:
    loaded = load_model(ModelSettings(model=str(tiny_models["llama"]), dtypes=["float32"]))
    loaded.model.model.layers[1].mlp.register_parameter("mystery_experts", torch.nn.Parameter(torch.zeros(2, 32, 8)))
    with pytest.raises(UnsupportedLayoutError, match="model.layers.1.mlp.mystery_experts"):
        find_components(loaded.model)


def test_layer_without_output_projection_is_a_loud_error(tiny_models: dict[str, Path]) -> None:
    loaded = load_model(ModelSettings(model=str(tiny_models["llama"]), dtypes=["float32"]))
    layer = loaded.model.model.layers[2]
    layer.mlp.output_layer = layer.mlp.down_proj
    del layer.mlp.down_proj
    with pytest.raises(UnsupportedLayoutError, match=r"model.layers.2 .*mlp"):
        find_components(loaded.model)
