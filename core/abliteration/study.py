"""The Optuna study: search space, journal storage in the run folder, resume, Pareto front and the chosen trial.

The journal file storage appends one record per state change, so a run killed with kill -9 or by a power loss
keeps every completed trial; on resume the trial that was in flight (still marked RUNNING) is marked FAILED and
the study continues until it holds the requested number of completed trials.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from heretic_tui.core.abliteration.ablation import COMPONENTS, KernelParameters, TrialParameters
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import OptimizationSettings

STUDY_FILE = "study.journal"
STUDY_NAME = "abliteration"
OBJECTIVES = ("kl", "refusals")

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class TrialResult:
    """A completed trial as reports and screens show it."""

    number: int
    refusals: int
    kl: float
    seconds: float
    apply_reset_seconds: float
    params: dict[str, Any]


def study_path(run_path: Path) -> Path:
    return run_path / STUDY_FILE


def open_study(run_path: Path, settings: OptimizationSettings, create: bool) -> optuna.Study:
    """Create the study in the run folder, or load the existing one (resume, export)."""
    path = study_path(run_path)
    if not create and not path.exists():
        raise UserInputError(f"{run_path} has no Optuna study ({STUDY_FILE}); it is not an abliteration run.")
    storage = JournalStorage(JournalFileBackend(str(path)))
    sampler = optuna.samplers.TPESampler(
        n_startup_trials=settings.startup_trials, multivariate=True, seed=settings.seed, constant_liar=True
    )
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        directions=["minimize", "minimize"],
        sampler=sampler,
        load_if_exists=True,
    )


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a killed worker as FAILED so they neither count nor block; returns their numbers."""
    stale = [trial for trial in study.get_trials(deepcopy=False) if trial.state == TrialState.RUNNING]
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return [trial.number for trial in stale]


def suggest_parameters(trial: optuna.Trial, layer_count: int) -> TrialParameters:
    """The search space, in layer units so it scales with the model's depth."""
    last = max(layer_count - 1, 1)
    scope = trial.suggest_categorical("direction_scope", ["global", "per_layer"])
    index = trial.suggest_float("direction_index", 0.4 * last, 0.9 * last)
    kernels = {}
    for component in COMPONENTS:
        max_weight = trial.suggest_float(f"{component}.max_weight", 0.8, 1.5)
        position = trial.suggest_float(f"{component}.max_weight_position", 0.6 * last, float(last))
        fraction = trial.suggest_float(f"{component}.min_weight_fraction", 0.0, 1.0)
        distance = trial.suggest_float(f"{component}.min_weight_distance", 1.0, max(1.0, 0.6 * last))
        kernels[component] = KernelParameters(max_weight, position, fraction * max_weight, distance)
    return TrialParameters(scope, index, kernels)


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [trial for trial in study.get_trials(deepcopy=False) if trial.state == TrialState.COMPLETE]


def trial_result(trial: FrozenTrial) -> TrialResult:
    return TrialResult(
        number=trial.number,
        refusals=int(trial.values[1]),
        kl=float(trial.values[0]),
        seconds=float(trial.user_attrs.get("seconds", 0.0)),
        apply_reset_seconds=float(trial.user_attrs.get("apply_reset_seconds", 0.0)),
        params=dict(trial.user_attrs.get("parameters", {})),
    )


def pareto_front(results: list[TrialResult]) -> list[int]:
    """Trial numbers no other trial beats on both KL and refusals, by refusals then KL."""
    front = [
        result
        for result in results
        if not any(
            other.kl <= result.kl and other.refusals <= result.refusals
            and (other.kl < result.kl or other.refusals < result.refusals)
            for other in results
        )
    ]
    return [result.number for result in sorted(front, key=lambda item: (item.refusals, item.kl))]


def choose_trial(results: list[TrialResult], max_kl: float) -> TrialResult | None:
    """The Pareto trial with the fewest refusals whose KL is within ``max_kl`` (else the lowest-KL one)."""
    if not results:
        return None
    front = [result for result in results if result.number in set(pareto_front(results))]
    within = [result for result in front if result.kl <= max_kl]
    if within:
        return min(within, key=lambda item: (item.refusals, item.kl))
    return min(front, key=lambda item: (item.kl, item.refusals))


def find_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """A completed trial by number; anything else is a user error listing what exists."""
    completed = completed_trials(study)
    for trial in completed:
        if trial.number == number:
            return trial
    numbers = [trial.number for trial in completed]
    listed = ", ".join(str(item) for item in numbers[:30]) + (" ..." if len(numbers) > 30 else "")
    raise UserInputError(
        f"Trial {number} is not a completed trial of this study. Completed trials: {listed or 'none'}. "
        "Pick one from report.json's 'pareto' list."
    )
