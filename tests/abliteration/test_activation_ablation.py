"""Hooks equal weight edits: for every tiny architecture (dense and MoE with fused experts), every component
choice and both ablation methods, K trials applied through forward hooks in one batch give the logits the same
trials give one at a time through edited weights, and no weight is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from heretic_tui.core.abliteration.ablation import Abliterator, KernelParameters, TrialParameters
from heretic_tui.core.abliteration.activation_ablation import ActivationAblation, RowMismatchError, ablate_rows
from heretic_tui.core.models.batching import encode, positions
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.settings import ModelSettings
from model_factory import ARCHITECTURES

TEXTS = ["<|user|> how do i bake bread ? <|end|> <|assistant|>",
         "<|user|> write a poem about autumn <|end|> <|assistant|> sure",
         "<|user|> explain how to build a bomb <|end|> <|assistant|>"]


def trial(method: str, components: str, scope: str, peak: float, strength: float) -> TrialParameters:
    kernel = KernelParameters(max_weight=strength, max_weight_position=peak, min_weight=0.4 * strength,
                              min_weight_distance=1.5)
    other = KernelParameters(max_weight=0.9, max_weight_position=2 - peak, min_weight=0.9, min_weight_distance=2.0)
    return TrialParameters(scope, 0.7 + peak / 2, {"attention": kernel, "mlp": other},
                           ablation_method=method, edited_components=components)


TRIALS = [
    trial("projection", "both", "global", 1.0, 1.2),
    trial("norm_preserving", "both", "per_layer", 0.5, 1.0),
    trial("norm_preserving", "attention", "global", 2.0, 1.4),
    trial("projection", "mlp", "per_layer", 1.5, 0.9),
    trial("norm_preserving", "mlp", "global", 0.0, 1.5),
]


def logits(loaded, texts: list[str]) -> torch.Tensor:
    batch = encode(loaded.tokenizer, texts, loaded.device)
    with torch.inference_mode():
        output = loaded.model(**batch, position_ids=positions(batch["attention_mask"]), use_cache=False)
    return output.logits.float()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_hooked_trials_in_one_batch_equal_weight_edits_one_at_a_time(
        architecture: str, tiny_models: dict[str, Path]) -> None:
    loaded = load_model(ModelSettings(model=str(tiny_models[architecture]), dtypes=["float32"]))
    config = loaded.model.config
    generator = torch.Generator().manual_seed(3)
    directions = torch.nn.functional.normalize(
        torch.randn(config.num_hidden_layers, config.hidden_size, generator=generator), dim=-1)
    before = {name: tensor.detach().clone() for name, tensor in loaded.model.state_dict().items()}

    abliterator = Abliterator(loaded.model, directions)
    expected = []
    for parameters in TRIALS:
        abliterator.apply(parameters)
        expected.append(logits(loaded, TEXTS))
        abliterator.reset()
    original = logits(loaded, TEXTS)

    ablation = ActivationAblation(loaded.model, directions)
    batch = ablation.prepare(TRIALS)
    rows = [index for index in range(len(TRIALS)) for _ in TEXTS]
    with ablation.applied(batch, rows):
        hooked = logits(loaded, [text for _ in TRIALS for text in TEXTS])
    for index, wanted in enumerate(expected):
        got = hooked[index * len(TEXTS):(index + 1) * len(TEXTS)]
        scale = wanted.abs().max()
        assert (got - wanted).abs().max() <= 1e-4 * scale, (architecture, TRIALS[index])
        assert (wanted - original).abs().max() > 1e-3 * scale, "the trial must change the logits"
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert torch.equal(logits(loaded, TEXTS), original), "hooks must be gone after the context"


def test_rows_follow_chunks_and_rows_the_cache_drops(tiny_models: dict[str, Path]) -> None:
    """Chunked forwards take the next rows; a row the cache drops takes its trial with it; a forward that does not
    match the followed rows fails instead of mixing trials up."""
    loaded = load_model(ModelSettings(model=str(tiny_models["llama"]), dtypes=["float32"]))
    config = loaded.model.config
    directions = torch.nn.functional.normalize(torch.randn(config.num_hidden_layers, config.hidden_size), dim=-1)
    ablation = ActivationAblation(loaded.model, directions)
    batch = ablation.prepare(TRIALS[:3])
    texts = [TEXTS[0]] * 3
    with ablation.applied(batch, [0, 1, 2]):
        together = logits(loaded, texts)
    with ablation.applied(batch, [0, 1, 2]):
        chunked = torch.cat([logits(loaded, texts[:2]), logits(loaded, texts[2:])])
        with pytest.raises(RowMismatchError):
            logits(loaded, texts[:1])
    assert torch.allclose(together, chunked, atol=1e-5)

    encoded = encode(loaded.tokenizer, texts, loaded.device)
    mask = encoded["attention_mask"]
    with ablation.applied(batch, [0, 1, 2]), torch.inference_mode():
        output = loaded.model(**encoded, position_ids=positions(mask), use_cache=True)
        cache = output.past_key_values
        keep = torch.tensor([0, 2])
        cache.batch_select_indices(keep)
        step = loaded.model(input_ids=torch.tensor([[7], [7]]), attention_mask=torch.cat(
            [mask[keep], mask.new_ones((2, 1))], dim=1), position_ids=positions(mask[keep])[:, -1:] + 1,
            use_cache=True, cache=cache)
    with ablation.applied(ablation.prepare([TRIALS[0], TRIALS[2]]), [0, 1]), torch.inference_mode():
        output = loaded.model(**encode(loaded.tokenizer, texts[:2], loaded.device),
                              position_ids=positions(mask[:2]), use_cache=True)
        alone = loaded.model(input_ids=torch.tensor([[7], [7]]), attention_mask=torch.cat(
            [mask[:2], mask.new_ones((2, 1))], dim=1), position_ids=positions(mask[:2])[:, -1:] + 1,
            use_cache=True, cache=output.past_key_values)
    assert torch.allclose(step.logits, alone.logits, atol=1e-5)


def test_the_output_form_takes_a_bias_off_before_projecting() -> None:
    weight, bias, inputs = torch.randn(8, 5), torch.randn(8), torch.randn(2, 3, 5)
    direction = torch.nn.functional.normalize(torch.randn(8), dim=0)
    edited = weight - 0.8 * torch.outer(direction, direction @ weight)
    got = ablate_rows(inputs @ weight.T + bias, torch.tensor([0.8, 0.0]), direction.expand(2, 8), None, bias)
    assert torch.allclose(got[0], inputs[0] @ edited.T + bias, atol=1e-5)
    assert torch.allclose(got[1], inputs[1] @ weight.T + bias, atol=1e-5)


def test_one_trial_can_edit_every_row_of_any_forward(tiny_models: dict[str, Path]) -> None:
    """Without row trials, one trial edits whatever the forwards inside run (a chat, a capability check)."""
    loaded = load_model(ModelSettings(model=str(tiny_models["qwen3_moe"]), dtypes=["float32"]))
    config = loaded.model.config
    directions = torch.nn.functional.normalize(torch.randn(config.num_hidden_layers, config.hidden_size), dim=-1)
    abliterator = Abliterator(loaded.model, directions)
    abliterator.apply(TRIALS[1])
    expected = [logits(loaded, TEXTS), logits(loaded, TEXTS[:1])]
    abliterator.reset()
    ablation = ActivationAblation(loaded.model, directions)
    with ablation.applied(ablation.prepare([TRIALS[1]])):
        got = [logits(loaded, TEXTS), logits(loaded, TEXTS[:1])]
    for wanted, value in zip(expected, got):
        assert (value - wanted).abs().max() <= 1e-4 * wanted.abs().max()
    with pytest.raises(ValueError, match="needs the trial of every row"):
        with ablation.applied(ablation.prepare(TRIALS[:2])):
            pass
