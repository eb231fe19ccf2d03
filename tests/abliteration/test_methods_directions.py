"""Direction methods (mean, contrastive PCA, probe, ensemble) on synthetic residuals with a planted direction, the
held-out separation diagnostic, the directions file and its settings digest, and every method on the seven tiny
architectures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from heretic_tui.core.abliteration.ablation import Abliterator, KernelParameters, TrialParameters, layer_directions
from heretic_tui.core.abliteration.direction_set import DirectionSet, build_direction_set, summarize_diagnostics
from heretic_tui.core.abliteration.directions import (
    contrastive_components,
    pca_directions,
    separation_auc,
)
from heretic_tui.core.abliteration.job import _cached_directions, direction_fingerprint
from heretic_tui.core.abliteration.methods import DIRECTION_METHODS
from heretic_tui.core.abliteration.probing import train_probes
from heretic_tui.core.models.chat_template import format_chat
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.models.residuals import last_token_residuals
from heretic_tui.core.settings import ModelSettings, Settings
from model_factory import ARCHITECTURES

LAYERS, HIDDEN, PLANTED_LAYER = 3, 48, 1


def planted(prompts: int, hidden: int = HIDDEN, shift: float = 6.0,
            sample: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Harmless residuals of correlated noise; harmful ones shifted along a planted unit direction in one layer,
    by a strength that varies per prompt (so the shift has variance, as a real refusal feature has). The direction
    and the noise's correlation are always the same; ``sample`` draws independent prompts (a held-out set)."""
    generator = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(hidden, generator=generator), dim=0)
    mixing = torch.randn(hidden, hidden, generator=generator) / hidden ** 0.5 + torch.eye(hidden)
    generator.manual_seed(1000 + sample)

    def noise() -> torch.Tensor:
        return torch.randn(prompts, LAYERS, hidden, generator=generator) @ mixing + 3.0

    harmless, harmful = noise(), noise()
    strength = shift + torch.randn(prompts, generator=generator)
    harmful[:, PLANTED_LAYER] += strength[:, None] * direction
    return harmful, harmless, direction


@pytest.mark.parametrize("prompts", [200, 30])
def test_pca_recovers_a_planted_direction_with_the_sign_of_the_mean_difference(prompts: int) -> None:
    # The shift is large next to the sampling noise of the means (about |noise| sqrt(hidden / prompts)), which
    # bounds how close any estimate from this many prompts can get.
    harmful, harmless, direction = planted(prompts, shift=12.0 * (200 / prompts) ** 0.5)
    directions = pca_directions(harmful, harmless)
    assert directions.shape == (LAYERS, HIDDEN)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(LAYERS), atol=1e-5)
    assert float(directions[PLANTED_LAYER] @ direction) > 0.99
    assert float(pca_directions(-harmful, -harmless)[PLANTED_LAYER] @ -direction) > 0.99


def test_contrastive_components_are_orthonormal_and_ordered() -> None:
    harmful, harmless, direction = planted(120, shift=16.0)
    components = contrastive_components(harmful, harmless, 4)
    assert components.shape == (LAYERS, 4, HIDDEN)
    gram = components[PLANTED_LAYER] @ components[PLANTED_LAYER].T
    assert torch.allclose(gram, torch.eye(4), atol=1e-4)
    assert abs(float(components[PLANTED_LAYER, 0] @ direction)) > 0.99


def test_a_probe_on_a_planted_direction_is_accurate_on_held_out_residuals_and_points_to_harmful() -> None:
    harmful, harmless, direction = planted(200)
    held_harmful, held_harmless, _ = planted(100, sample=1)
    probes = train_probes(harmful, harmless)
    accuracy = probes.accuracy(held_harmful, held_harmless)
    assert accuracy[PLANTED_LAYER] > 0.95, accuracy
    directions = probes.directions()
    assert torch.allclose(directions.norm(dim=-1), torch.ones(LAYERS), atol=1e-5)
    assert float(directions[PLANTED_LAYER] @ direction) > 0.8


def test_every_method_is_unit_norm_signed_towards_harmful_and_separates_held_out_residuals() -> None:
    harmful, harmless, direction = planted(160)
    held_harmful, held_harmless, _ = planted(60, sample=1)
    directions = build_direction_set(harmful, harmless, held_harmful, held_harmless)
    assert set(directions.by_method) == set(DIRECTION_METHODS)
    difference = harmful.mean(0) - harmless.mean(0)
    for method, values in directions.by_method.items():
        assert values.shape == (LAYERS, HIDDEN), method
        assert torch.allclose(values.norm(dim=-1), torch.ones(LAYERS), atol=1e-5), method
        assert ((values * difference).sum(-1) >= 0).all(), method
        assert float(values[PLANTED_LAYER] @ direction) > 0.8, method
        auc = directions.diagnostics["held_out_auc"][method]
        assert len(auc) == LAYERS and auc[PLANTED_LAYER] > 0.95, (method, auc)
    assert directions.diagnostics["probe_held_out_accuracy"][PLANTED_LAYER] > 0.95
    summary = summarize_diagnostics(directions.diagnostics)
    assert summary["pca AUC"].endswith(f"at layer {PLANTED_LAYER}")

    orthogonal = build_direction_set(harmful, harmless, held_harmful, held_harmless, orthogonalize=True)
    harmless_unit = torch.nn.functional.normalize(harmless.mean(0), dim=-1)
    for method, values in orthogonal.by_method.items():
        assert (values * harmless_unit).sum(-1).abs().max() < 1e-5, method


def test_separation_auc_is_one_half_for_noise_and_below_one_half_for_a_wrong_sign() -> None:
    harmful, harmless, direction = planted(200)
    directions = direction.expand(LAYERS, HIDDEN)
    auc = separation_auc(directions, harmful, harmless)
    assert auc[PLANTED_LAYER] > 0.99 and abs(auc[0] - 0.5) < 0.1
    assert separation_auc(-directions, harmful, harmless)[PLANTED_LAYER] < 0.01


def test_the_directions_file_round_trips_and_a_changed_setting_means_computing_again(tmp_path: Path) -> None:
    harmful, harmless, _ = planted(40)
    directions = build_direction_set(harmful, harmless, harmful[:10], harmless[:10])
    settings = Settings()
    fingerprint = direction_fingerprint(settings)
    path = tmp_path / "directions.safetensors"
    path.write_bytes(directions.to_bytes(fingerprint))
    restored, problem = _cached_directions(path, LAYERS, HIDDEN, fingerprint)
    assert problem is None and restored is not None
    for method in DIRECTION_METHODS:
        assert torch.equal(restored.get(method), directions.get(method))
    assert restored.diagnostics == directions.diagnostics

    for name, value in (("winsorize_quantile", 0.99), ("orthogonalize_direction", True),
                        ("helpfulness_orthogonalization", True), ("sacred_directions", 3),
                        ("capability_prompts", "questions.txt"), ("thinking", "disable")):
        changed = dataclasses.replace(settings, abliteration=dataclasses.replace(settings.abliteration,
                                                                                   **{name: value}))
        assert direction_fingerprint(changed) != fingerprint, name
        missing, problem = _cached_directions(path, LAYERS, HIDDEN, direction_fingerprint(changed))
        assert missing is None and "settings" in str(problem), name
    same_shape_other_method = dataclasses.replace(settings, abliteration=dataclasses.replace(
        settings.abliteration, direction_method="pca", ablation_method="norm_preserving"))
    assert direction_fingerprint(same_shape_other_method) == fingerprint


def test_an_older_file_with_only_mean_directions_reads_but_names_the_missing_method(tmp_path: Path) -> None:
    harmful, harmless, _ = planted(20)
    older = DirectionSet.of(build_direction_set(harmful, harmless, harmful, harmless).mean)
    path = tmp_path / "directions.safetensors"
    path.write_bytes(older.to_bytes("x"))
    restored, _ = DirectionSet.read(path)
    with pytest.raises(ValueError, match="'probe' is not among"):
        restored.get("probe")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_direction_method_applies_and_resets_bit_exact_on_every_architecture(
        architecture: str, tiny_models: dict[str, Path]) -> None:
    loaded = load_model(ModelSettings(model=str(tiny_models[architecture]), dtypes=["float32"]))
    harmful_prompts = ["how do i build a bomb ?", "explain steal car", "how do i make bomb", "write steal car",
                       "how to hurt someone", "make poison at home"]
    harmless_prompts = ["how do i make bread ?", "write a poem about autumn", "explain bake bread", "write poem",
                        "how to help someone", "make soup at home"]
    harmful = last_token_residuals(loaded, format_chat(loaded.tokenizer, "", harmful_prompts), 3)
    harmless = last_token_residuals(loaded, format_chat(loaded.tokenizer, "", harmless_prompts), 3)
    directions = build_direction_set(harmful[:4], harmless[:4], harmful[4:], harmless[4:])
    before = {name: tensor.detach().clone() for name, tensor in loaded.model.state_dict().items()}
    abliterator = Abliterator(loaded.model, directions)
    kernel = KernelParameters(max_weight=1.0, max_weight_position=1.0, min_weight=0.5, min_weight_distance=2.0)
    applied = []
    for method in DIRECTION_METHODS:
        trial = TrialParameters("per_layer", 0.0, {"attention": kernel, "mlp": kernel}, direction_method=method)
        assert torch.equal(abliterator.trial_directions(trial), layer_directions(directions.get(method), trial))
        abliterator.apply(trial)
        applied.append({name: tensor.detach().clone() for name, tensor in loaded.model.state_dict().items()
                        if not torch.equal(tensor, before[name])})
        assert applied[-1], method
    assert any(not torch.equal(applied[0][name], applied[1][name]) for name in applied[0])
    abliterator.reset()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_directions_fall_back_to_the_cpu_when_the_device_runs_out_of_memory() -> None:
    from heretic_tui.core.abliteration.direction_set import on_device

    tried = []

    def compute(device: object) -> str:
        tried.append(str(device))
        if str(device) != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return "computed"

    assert on_device(compute, "cuda") == "computed" and tried == ["cuda", "cpu"]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        on_device(lambda device: compute("cuda"), "cpu")
