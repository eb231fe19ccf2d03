"""The built-in capability checks: a fixed set, the same numbers run twice, paired differences with intervals."""

from __future__ import annotations

import math

import pytest

from heretic_tui.core.capability.checks import CapabilityResult, compare_results, paired_difference, run_checks
from heretic_tui.core.capability.multiple_choice import ITEMS, build_items
from heretic_tui.core.models.loading import LoadedModel, load_model
from heretic_tui.core.settings import Settings


def test_the_set_is_a_few_hundred_fixed_four_option_items() -> None:
    assert 250 <= len(ITEMS) == Settings().abliteration.capability_questions
    assert build_items() == list(ITEMS), "the seeded builder gives the same set every time"
    for item in ITEMS:
        assert len(item.options) == 4 and len(set(item.options)) == 4 and 0 <= item.answer < 4
    assert sum(item.options[item.answer] == "Paris" for item in ITEMS) == 1
    addition = next(item for item in ITEMS if item.family == "addition")
    first, second = (int(part) for part in addition.question.removeprefix("What is ").rstrip("?").split(" + "))
    assert addition.options[addition.answer] == str(first + second)


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_model(Settings().model)


def test_checks_give_the_same_numbers_run_twice_and_batching_does_not_change_them(demo: LoadedModel) -> None:
    first = run_checks(demo, 16, 60)
    again = run_checks(demo, 16, 60)
    single = run_checks(demo, 1, 60)
    assert first == again
    assert first.correct == single.correct
    assert first.paragraph_loss == pytest.approx(single.paragraph_loss)
    assert len(first.correct) == 60 and len(first.paragraph_loss) >= 20
    assert 0.0 <= first.accuracy <= 1.0 and math.isfinite(first.perplexity) and first.perplexity > 1.0


def test_paired_difference_and_its_interval() -> None:
    same = paired_difference([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    worse = paired_difference([1.0] * 50, [1.0] * 40 + [0.0] * 10)
    assert worse.value == pytest.approx(-0.2) and worse.low < -0.2 < worse.high < 0.0
    record = compare_results(CapabilityResult([True, True, False, True], [1.0, 2.0]),
                             CapabilityResult([True, False, False, True], [1.5, 2.5]))
    assert record["accuracy_change"]["value"] == pytest.approx(-0.25)
    assert record["perplexity_ratio"]["value"] == pytest.approx(math.exp(0.5))
    assert record["original"]["multiple_choice_accuracy"] == 0.75 and record["trial"]["questions"] == 4


def test_a_trial_checked_through_the_hooks_scores_as_through_its_weights(demo: LoadedModel) -> None:
    """A quantized run has no weight path: its chosen trial is checked through the hooks, with the same result."""
    import torch

    from heretic_tui.core.abliteration.ablation import Abliterator
    from heretic_tui.core.abliteration.activation_ablation import ActivationAblation
    from heretic_tui.core.capability.trial_checks import trial_applied

    config = demo.model.config
    generator = torch.Generator().manual_seed(5)
    directions = torch.nn.functional.normalize(
        torch.randn(config.num_hidden_layers, config.hidden_size, generator=generator), dim=-1)
    parameters = {"direction_scope": "global", "direction_index": 1.5,
                  "attention.max_weight": 1.2, "attention.max_weight_position": 1.0,
                  "attention.min_weight": 0.5, "attention.min_weight_distance": 2.0,
                  "mlp.max_weight": 1.1, "mlp.max_weight_position": 1.5,
                  "mlp.min_weight": 0.4, "mlp.min_weight_distance": 2.0}
    original = run_checks(demo, 16, 40)
    with trial_applied(Abliterator(demo.model, directions), None, parameters):
        through_weights = run_checks(demo, 16, 40)
    with trial_applied(None, ActivationAblation(demo.model, directions), parameters):
        through_hooks = run_checks(demo, 16, 40)
    assert through_weights.paragraph_loss != pytest.approx(original.paragraph_loss), "the trial must change the model"
    assert through_hooks.correct == through_weights.correct
    assert through_hooks.paragraph_loss == pytest.approx(through_weights.paragraph_loss, rel=1e-4)
    assert run_checks(demo, 16, 40) == original, "the hooks are gone after the check"
