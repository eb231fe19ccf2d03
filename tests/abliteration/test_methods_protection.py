"""Helpfulness orthogonalization and sacred directions: the protected basis, directions orthogonal to it in every
layer and scope, its place in the directions file, and the built-in offline prompt sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from heretic_tui.core.abliteration.ablation import Abliterator, KernelParameters, TrialParameters
from heretic_tui.core.abliteration.builtin_prompts import builtin_prompts
from heretic_tui.core.abliteration.direction_set import DirectionSet, build_direction_set
from heretic_tui.core.abliteration.directions import mean_differences
from heretic_tui.core.abliteration.methods import DIRECTION_METHODS
from heretic_tui.core.abliteration.prompts import load_prompt_records
from heretic_tui.core.abliteration.protection import load_reference_prompts, protect, protected_basis
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.settings import ModelSettings, Settings

LAYERS, HIDDEN = 4, 40


def residuals(prompts: int, offset: torch.Tensor, spread: torch.Tensor | None = None,
              seed: int = 0) -> torch.Tensor:
    """Noise around an offset per layer ([layers, hidden]); with ``spread``, extra variance along it."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(prompts, LAYERS, HIDDEN, generator=generator) + offset
    if spread is not None:
        values += 8.0 * torch.randn(prompts, LAYERS, 1, generator=generator) * spread
    return values


def reference_residuals() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    offsets = {name: torch.randn(LAYERS, HIDDEN, generator=generator) for name in ("harmless", "general", "harmful")}
    sacred = torch.nn.functional.normalize(torch.randn(LAYERS, HIDDEN, generator=generator), dim=-1)
    return {
        "harmless": residuals(120, offsets["harmless"], seed=1),
        "harmful": residuals(120, offsets["harmful"], seed=2),
        "general": residuals(120, offsets["general"], seed=3),
        "capability": residuals(120, offsets["general"], spread=sacred, seed=4),
        "sacred": sacred,
    }


def test_the_protected_basis_is_orthonormal_and_holds_the_unhelpfulness_and_sacred_directions() -> None:
    data = reference_residuals()
    basis = protected_basis(data["harmless"], data["general"], data["capability"], True, 3)
    assert basis is not None and basis.shape[0] == LAYERS and basis.shape[2] == HIDDEN
    unhelpfulness = torch.nn.functional.normalize(mean_differences(data["general"], data["harmless"]), dim=-1)
    for layer in range(LAYERS):
        vectors = basis[layer][basis[layer].norm(dim=-1) > 0.5]
        assert torch.allclose(vectors @ vectors.T, torch.eye(len(vectors)), atol=1e-5)
        inside = vectors.T @ (vectors @ unhelpfulness[layer])
        assert torch.allclose(inside, unhelpfulness[layer], atol=1e-5), "the unhelpfulness direction is protected"
        assert (vectors @ data["sacred"][layer]).norm() > 0.99, "the planted capability direction is protected"
    assert protected_basis(data["harmless"], None, None, False, 0) is None


def test_sacred_components_capability_prompts_vary_along_less_than_plain_text_are_left_out() -> None:
    data = reference_residuals()
    narrower = 0.3 * (residuals(120, torch.zeros(LAYERS, HIDDEN), seed=9)) + data["general"].mean(0)
    basis = protected_basis(data["harmless"], data["general"], narrower, False, 6)
    assert basis is not None
    assert (basis.norm(dim=-1) > 0.5).sum() == 0, "no direction is protected where nothing is there to protect"


@pytest.mark.parametrize("scope", ["global", "per_layer"])
def test_every_layer_is_edited_with_a_direction_orthogonal_to_its_own_protected_basis(
        scope: str, tiny_models: dict[str, Path]) -> None:
    loaded = load_model(ModelSettings(model=str(tiny_models["llama"]), dtypes=["float32"]))
    config = loaded.model.config
    layers, hidden = config.num_hidden_layers, config.hidden_size
    generator = torch.Generator().manual_seed(0)
    model_directions = DirectionSet(
        {method: torch.nn.functional.normalize(torch.randn(layers, hidden, generator=generator), dim=-1)
         for method in DIRECTION_METHODS},
        protected=torch.linalg.qr(torch.randn(layers, hidden, 3, generator=generator))[0].transpose(1, 2),
    )
    abliterator = Abliterator(loaded.model, model_directions)
    kernel = KernelParameters(max_weight=1.0, max_weight_position=1.0, min_weight=1.0, min_weight_distance=9.0)
    for method in model_directions.by_method:
        trial = TrialParameters(scope, 1.3, {"attention": kernel, "mlp": kernel}, direction_method=method)
        used = abliterator.trial_directions(trial)
        assert torch.allclose(used.norm(dim=-1), torch.ones(layers), atol=1e-5)
        cosines = torch.einsum("lkh,lh->lk", model_directions.protected, used)
        assert cosines.abs().max() < 1e-5, (method, scope)
    before = {name: tensor.detach().clone() for name, tensor in loaded.model.state_dict().items()}
    abliterator.apply(trial)
    protected_inputs = model_directions.protected[:, 0]
    for component, _ in abliterator.weights(trial):
        if component.parameter.dim() == 2:
            original = before[component.name]
            layer_vector = protected_inputs[component.layer]
            # The edit leaves the protected direction's share of every output as it was.
            assert torch.allclose(layer_vector @ component.parameter.detach(), layer_vector @ original, atol=1e-5)
    abliterator.reset()
    assert all(torch.equal(tensor, before[name]) for name, tensor in loaded.model.state_dict().items())


def test_protect_leaves_directions_without_a_basis_alone_and_zeroes_a_fully_protected_one() -> None:
    directions = torch.nn.functional.normalize(torch.randn(2, 6), dim=-1)
    assert protect(directions, None) is directions
    basis = torch.zeros(2, 1, 6)
    basis[:, 0] = directions
    assert torch.allclose(protect(directions, basis), torch.zeros(2, 6), atol=1e-6)


def test_the_protected_basis_round_trips_through_the_directions_file(tmp_path: Path) -> None:
    data = reference_residuals()
    directions = build_direction_set(data["harmful"], data["harmless"], data["harmful"][:20], data["harmless"][:20])
    directions.protected = protected_basis(data["harmless"], data["general"], None, True, 0)
    path = tmp_path / "directions.safetensors"
    path.write_bytes(directions.to_bytes("digest"))
    restored, fingerprint = DirectionSet.read(path)
    assert fingerprint == "digest" and restored.protected is not None
    assert torch.equal(restored.protected, directions.protected)


def test_the_builtin_reference_sets_are_varied_offline_prompts() -> None:
    general = builtin_prompts("general_text", "train")
    capability = builtin_prompts("capability", "train")
    for prompts in (general, capability):
        assert len(prompts) >= 64 and len(set(prompts)) == len(prompts)
    assert not any(text.rstrip().endswith("?") for text in general), "plain text asks for nothing"
    assert sum(text.rstrip().endswith("?") for text in capability) > len(capability) / 2
    assert not set(general) & set(builtin_prompts("harmless", "train"))
    assert len(load_prompt_records("builtin:capability", 10, origin="test")) == 10
    with pytest.raises(UserInputError, match="one split"):
        builtin_prompts("capability", "test")


def test_reference_prompts_load_only_when_a_protection_is_on_and_name_their_setting(tmp_path: Path) -> None:
    settings = Settings()
    assert load_reference_prompts(settings) == {}
    settings.abliteration.helpfulness_orthogonalization = True
    assert set(load_reference_prompts(settings)) == {"general_text_prompts"}
    settings.abliteration.sacred_directions = 2
    settings.abliteration.capability_prompts = str(tmp_path / "missing.txt")
    with pytest.raises(UserInputError, match="abliteration.capability_prompts"):
        load_reference_prompts(settings)
