"""The capability score as a third objective of the search: accuracy on a fixed subset of the built-in questions.

Heretic's users found a quick multiple-choice check tracks what a trial costs the model better than first-token KL.
Every trial answers the same questions (a subset spread evenly over the whole set, so each family is represented and
the score is comparable between trials) while the trial's edit is applied, scored by option log-likelihood like
:mod:`~heretic_tui.core.capability.checks`. The subset is small (a setting) so a trial stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import optuna

from heretic_tui.core.abliteration.study import has_capability_objective
from heretic_tui.core.capability.checks import answer_items
from heretic_tui.core.capability.multiple_choice import ITEMS, Item
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.settings import OptimizationSettings

if TYPE_CHECKING:
    from heretic_tui.core.abliteration.ablation import TrialParameters
    from heretic_tui.core.abliteration.batched_evaluation import BatchedEvaluator
    from heretic_tui.core.abliteration.evaluation import Evaluator


def objective_items(count: int) -> tuple[Item, ...]:
    """``count`` questions spread evenly over the built-in set, the same ones on every machine and every trial."""
    count = max(1, min(count, len(ITEMS)))
    return tuple(ITEMS[index * len(ITEMS) // count] for index in range(count))


def capability_score(loaded: LoadedModel, items: tuple[Item, ...], batch_size: int) -> float:
    """The share of ``items`` the model as it is now (a trial's edit applied) answers right."""
    correct = answer_items(loaded, items, batch_size)
    return sum(correct) / len(correct)


def score_applied_trial(study: optuna.Study, settings: OptimizationSettings, evaluator: Evaluator) -> float | None:
    """The score of the trial whose edit is applied now (in the weights); None in a study without the objective."""
    if not has_capability_objective(study):
        return None
    return capability_score(evaluator.loaded, objective_items(settings.capability_objective_questions),
                            evaluator.batch_size)


def score_hooked_trials(study: optuna.Study, settings: OptimizationSettings, batched: BatchedEvaluator,
                        trials: Sequence[TrialParameters]) -> list[float | None]:
    """The score of each trial of a batch, each through the hooks on its own (all rows carry that one trial)."""
    if not has_capability_objective(study):
        return [None] * len(trials)
    items = objective_items(settings.capability_objective_questions)
    scores: list[float | None] = []
    for parameters in trials:
        with batched.ablation.applied(batched.ablation.prepare([parameters])):
            scores.append(capability_score(batched.evaluator.loaded, items, batched.evaluator.batch_size))
    return scores
