"""MPOA, the edited-components choice and winsorization: the properties issue 10 asks for, on synthetic weights and
on the seven tiny architectures."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from heretic_tui.core.abliteration.ablation import (
    Abliterator,
    KernelParameters,
    TrialParameters,
    input_axis,
    norm_preserving_project_out,
    project_out,
)
from heretic_tui.core.abliteration.methods import MethodChoices
from heretic_tui.core.abliteration.study import suggest_parameters
from heretic_tui.core.abliteration.winsorization import winsorize
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.settings import ModelSettings
from model_factory import ARCHITECTURES

torch.manual_seed(0)


def unit(size: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(size), dim=0)


@pytest.mark.parametrize(("shape", "output_axis"), [((16, 24), 0), ((3, 16, 24), 1), ((3, 24, 16), 2)])
def test_mpoa_keeps_every_row_norm_and_is_a_per_output_unit_rescale_of_the_projection(
        shape: tuple[int, ...], output_axis: int) -> None:
    weight = torch.randn(*shape, dtype=torch.float64).float()
    direction = unit(16)
    ablated = norm_preserving_project_out(weight, direction, 1.2, output_axis)
    axis = input_axis(weight, output_axis)
    before = weight.norm(dim=axis)
    after = ablated.norm(dim=axis)
    assert ((after - before).abs() / before).max() < 1e-5
    projected = project_out(weight, direction, 1.2, output_axis)
    scale = ablated / projected
    # y' = s * (y - w d d^T y): one factor per output unit (and expert), the same for every input.
    assert torch.allclose(scale, scale.mean(dim=axis, keepdim=True).expand_as(scale), atol=1e-4)
    assert not torch.allclose(ablated, weight)


def test_mpoa_forward_equals_the_hook_form_on_module_outputs() -> None:
    weight = torch.randn(16, 24)
    direction = unit(16)
    inputs = torch.randn(5, 24)
    ablated = norm_preserving_project_out(weight, direction, 0.9, 0)
    scale = weight.norm(dim=1) / project_out(weight, direction, 0.9, 0).norm(dim=1)
    outputs = inputs @ weight.T
    hooked = scale * (outputs - 0.9 * torch.outer(outputs @ direction, direction))
    assert torch.allclose(inputs @ ablated.T, hooked, atol=1e-5)


def test_a_row_the_projection_zeroes_keeps_a_scale_of_one() -> None:
    direction = torch.zeros(4)
    direction[0] = 1.0
    weight = torch.zeros(4, 3)
    weight[0] = torch.tensor([1.0, 2.0, 3.0])
    weight[1] = torch.tensor([0.5, 0.0, 1.0])
    ablated = norm_preserving_project_out(weight, direction, 1.0, 0)
    assert torch.isfinite(ablated).all()
    assert torch.equal(ablated[0], torch.zeros(3))
    assert torch.allclose(ablated[1], weight[1])


def methods_trial(ablation_method: str, edited_components: str) -> TrialParameters:
    kernel = KernelParameters(max_weight=1.0, max_weight_position=1.0, min_weight=0.5, min_weight_distance=2.0)
    return TrialParameters("global", 1.5, {"attention": kernel, "mlp": kernel},
                           ablation_method=ablation_method, edited_components=edited_components)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_mpoa_and_components_on_every_architecture_keep_norms_and_reset_bit_exact(
        architecture: str, tiny_models: dict[str, Path]) -> None:
    loaded = load_model(ModelSettings(model=str(tiny_models[architecture]), dtypes=["float32"]))
    config = loaded.model.config
    directions = torch.nn.functional.normalize(torch.randn(config.num_hidden_layers, config.hidden_size), dim=-1)
    before = {name: tensor.detach().clone() for name, tensor in loaded.model.state_dict().items()}
    abliterator = Abliterator(loaded.model, directions)

    trial = methods_trial("norm_preserving", "both")
    abliterator.apply(trial)
    touched = list(abliterator.weights(trial))
    assert touched
    for component, _ in touched:
        axis = input_axis(component.parameter, component.output_axis)
        original = before[component.name].norm(dim=axis)
        edited = component.parameter.detach().norm(dim=axis)
        assert ((edited - original).abs() / original.clamp_min(1e-12)).max() < 1e-5, component.name
        assert not torch.equal(component.parameter.detach(), before[component.name]), component.name
    abliterator.reset()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name

    for kind in ("attention", "mlp"):
        abliterator.apply(methods_trial("norm_preserving", kind))
        changed = {name for name, tensor in loaded.model.state_dict().items() if not torch.equal(tensor, before[name])}
        expected = {component.name for component in abliterator.components if component.kind == kind}
        assert changed and changed <= expected, (kind, changed - expected)
        abliterator.reset()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_method_parameters_round_trip_and_old_trials_read_as_the_defaults() -> None:
    trial = methods_trial("norm_preserving", "mlp")
    flat = trial.to_flat()
    assert flat["ablation_method"] == "norm_preserving" and flat["edited_components"] == "mlp"
    assert TrialParameters.from_flat(flat) == trial
    old = {key: value for key, value in flat.items() if key not in ("ablation_method", "edited_components",
                                                                     "direction_method")}
    restored = TrialParameters.from_flat(old)
    assert (restored.direction_method, restored.ablation_method, restored.edited_components) == (
        "mean", "projection", "both")


def test_search_makes_methods_categorical_and_fixed_methods_are_recorded_not_sampled() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    searched = MethodChoices(ablation_method="search", edited_components="search")
    seen = set()
    for _ in range(24):
        trial = study.ask()
        parameters = suggest_parameters(trial, 8, searched)
        assert {"ablation_method", "edited_components"} <= set(trial.params)
        assert set(parameters.kernels) == {"attention", "mlp"}
        seen.add((parameters.ablation_method, parameters.edited_components))
        study.tell(trial, 0.0)
    assert {method for method, _ in seen} == {"projection", "norm_preserving"}
    assert {components for _, components in seen} == {"attention", "mlp", "both"}

    trial = study.ask()
    parameters = suggest_parameters(trial, 8, MethodChoices(ablation_method="norm_preserving",
                                                             edited_components="attention"))
    assert "ablation_method" not in trial.params and "edited_components" not in trial.params
    assert not any(name.startswith("mlp.") for name in trial.params)
    assert (parameters.ablation_method, parameters.edited_components) == ("norm_preserving", "attention")
    assert set(parameters.kernels) == {"attention"}


def test_winsorization_clamps_each_vector_to_its_own_quantile() -> None:
    residuals = torch.randn(6, 3, 200)
    residuals[:, :, 7] = 500.0
    residuals[:, :, 11] = -300.0
    clamped = winsorize(residuals, 0.98)
    bound = residuals.abs().kthvalue(196, dim=-1).values
    assert torch.allclose(clamped.abs().amax(dim=-1), bound)
    assert clamped[..., 7].max() < 10 and clamped[..., 11].min() > -10
    untouched = residuals.abs() <= bound.unsqueeze(-1)
    assert torch.equal(clamped[untouched], residuals[untouched])
    assert winsorize(residuals, 1.0) is residuals
    with pytest.raises(ValueError, match="quantile"):
        winsorize(residuals, 0.0)
