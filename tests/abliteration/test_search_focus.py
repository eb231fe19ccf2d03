"""The search's focus on the chosen end of the front, and its weight range, both from settings."""

from __future__ import annotations

import optuna
import pytest

from heretic_tui.core.abliteration.methods import MethodChoices
from heretic_tui.core.abliteration.study import allowed_refusals, constrain_refusals, suggest_parameters
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import OptimizationSettings, Settings, load_settings, overrides_from_text


def test_the_allowance_is_a_share_of_the_baseline_and_off_at_one() -> None:
    assert allowed_refusals(OptimizationSettings(feasible_refusal_share=1.0), 100) is None
    assert allowed_refusals(OptimizationSettings(), 100) == 10
    assert allowed_refusals(OptimizationSettings(feasible_refusal_share=0.1), 95) == 9
    assert allowed_refusals(OptimizationSettings(feasible_refusal_share=0.0), 95) == 0


def test_trials_over_the_allowance_are_infeasible_and_ranked_by_how_far_over() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    for kl, refusals in ((0.001, 40), (0.01, 3), (0.02, 12)):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        constrain_refusals(trial, refusals, 5)
        study.tell(trial, [kl, refusals])
    constraints = [trial.constraints["refusals"] for trial in study.trials]
    assert constraints == [35.0, -2.0, 7.0]
    feasible = [trial.number for trial in study.trials if max(trial.constraints.values()) <= 0]
    assert feasible == [1]


def test_no_constraint_is_recorded_when_the_focus_is_off() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    trial = study.ask()
    constrain_refusals(trial, 40, None)
    study.tell(trial, [0.1, 40])
    assert study.trials[0].constraints == {}


def test_the_weight_range_bounds_every_sampled_peak_weight() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        parameters = suggest_parameters(trial, 8, MethodChoices(weight_range=(1.6, 2.4)))
        for kernel in parameters.kernels.values():
            assert 1.6 <= kernel.max_weight <= 2.4
        study.tell(trial, 0.0)


def test_a_weight_range_upside_down_is_bad_input_naming_both_keys() -> None:
    with pytest.raises(UserInputError) as raised:
        load_settings(None, environ={}, search_default_paths=False, overrides=overrides_from_text(
            {"abliteration.lowest_ablation_weight": "2.0", "abliteration.highest_ablation_weight": "1.2"}))
    message = str(raised.value)
    assert "lowest_ablation_weight" in message and "highest_ablation_weight" in message
    assert MethodChoices.from_settings(Settings().abliteration).weight_range == (0.8, 1.5)
