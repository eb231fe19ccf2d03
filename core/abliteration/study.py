"""The Optuna study: search space, journal storage in the run folder, resume, Pareto front and the chosen trial.

The journal file storage appends one record per state change, so a run killed with kill -9 or by a power loss
keeps every completed trial. Writing and reading are kept apart:

- :func:`open_study` is for the one writer (the abliteration worker). Before anything appends it cuts a partial
  last record (a full disk or a power loss leaves one; appending after it would merge two records into a line
  Optuna can never read again), and it seeds the sampler from the trials already stored, so a resumed or
  extended study never replays the random trials it already ran.
- :func:`read_study` is for every other use (export, report, compare, screens): it loads the study without
  writing a byte to the journal (``optuna.create_study(load_if_exists=True)`` would append a record each time).

A study several workers share lives in an Optuna RDB storage instead (see
:mod:`~heretic_tui.core.abliteration.study_storage`): the starter creates it, every worker opens it with
heartbeats on, and readers load it from the URL the run's job.json names.

The front and the chosen trial come from :func:`pareto_front` and :func:`choose_trial`, which report.json, the
events and the TUI all use, so there is one definition of both.
"""

from __future__ import annotations

import json
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from heretic_tui.core.abliteration.ablation import COMPONENTS, KernelParameters, TrialParameters
from heretic_tui.core.abliteration.methods import (
    ABLATION_METHODS,
    COMPONENT_CHOICES,
    DIRECTION_METHODS,
    SEARCH,
    MethodChoices,
    edited_kinds,
)
from heretic_tui.core.abliteration.search_plan import random_trial_count
from heretic_tui.core.abliteration.study_storage import (
    CONFIG_ATTRIBUTE,
    StudyLocation,
    database_errors,
    location_of_run,
    open_rdb_storage,
    redacted,
    study_names,
)
from heretic_tui.core.abliteration.workers import WORKER_ATTRIBUTE
from heretic_tui.core.atomic_files import storage_errors
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.journal import cut_partial_record
from heretic_tui.core.settings import OptimizationSettings

STUDY_FILE = "study.journal"
STUDY_NAME = "abliteration"
OBJECTIVES = ("kl", "refusals")
CAPABILITY_OBJECTIVE = "capability"
"""The optional third objective (setting optimization.capability_objective): multiple-choice accuracy, maximised."""
TWO_OBJECTIVES = ["minimize", "minimize"]
THREE_OBJECTIVES = ["minimize", "minimize", "maximize"]
SAMPLER = "TPE"

RESAMPLE_ATTEMPTS = 20
"""How often a trial whose parameters were already tried is sampled again before the run gives up."""

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
"""Our trial loop is ask-and-tell and beats for its trials itself (see workers.start_heartbeat)."""


@dataclass
class TrialResult:
    """A completed trial as reports and screens show it."""

    number: int
    refusals: int
    kl: float
    seconds: float
    apply_reset_seconds: float
    params: dict[str, Any]
    worker: str = ""
    """The worker that ran it (host/gpu/pid), for studies several workers share."""
    capability: float | None = None
    """Multiple-choice accuracy on the objective's questions, in a study with the capability objective."""


def study_directions(settings: OptimizationSettings) -> list[str]:
    """KL and refusals minimised, and the capability score maximised when the setting asks for it."""
    return list(THREE_OBJECTIVES if settings.capability_objective else TWO_OBJECTIVES)


def has_capability_objective(study: optuna.Study) -> bool:
    """Whether the study was created with the capability objective; a study keeps the objectives it started with,
    whatever the setting says when it is resumed."""
    return len(study.directions) == len(THREE_OBJECTIVES)


def objective_values(study: optuna.Study, kl: float, refusals: int, capability: float | None) -> list[float]:
    """What ``study.tell`` takes for a trial: as many values as the study has objectives."""
    if not has_capability_objective(study):
        return [kl, refusals]
    if capability is None:
        raise ValueError("a study with the capability objective needs every trial's capability score")
    return [kl, refusals, capability]


REFUSAL_CONSTRAINT = "refusals"


def allowed_refusals(settings: OptimizationSettings, baseline_refusals: int) -> int | None:
    """The most refusals a feasible trial has (``feasible_refusal_share`` of the baseline), None when off."""
    if settings.feasible_refusal_share >= 1.0:
        return None
    return int(settings.feasible_refusal_share * baseline_refusals)


def constrain_refusals(trial: optuna.Trial, refusals: int, allowed: int | None) -> None:
    """Record how far a trial is over the feasible refusal count, before it is told (the sampler reads it then).

    Multi-objective TPE models the trials of the best non-domination ranks, and without a constraint those
    include trials that keep most refusals at nearly zero KL: the end of the front nobody picks. The constraint
    puts every trial at or under the allowance ahead of every trial over it, and orders the trials over it by
    how many refusals remain, so the search spends its trials where the chosen trial comes from. The default
    share (a tenth of the baseline) was chosen by bench/method_quality.py: at 30 trials it lowered the median best
    KL at 0 refusals on every toy that reaches 0 (see the README's method table).
    """
    if allowed is not None:
        trial.set_constraint(REFUSAL_CONSTRAINT, float(refusals - allowed))


def study_path(run_path: Path) -> Path:
    return run_path / STUDY_FILE


def sampler_seed(seed: int, stored_trials: int, worker: str = "") -> int:
    """The sampler's seed: the setting for a new study, mixed with the number of stored trials for a resumed one.

    A sampler seeded the same way on every resume would draw the same random trials again (hours of repeated work
    on a large model); mixing in the stored trial count gives each resume its own stream, and the same journal
    still resumes the same way. Workers sharing a study mix in their name too, or two of them starting together
    would propose the same random trials.
    """
    if stored_trials == 0 and not worker:
        return seed
    entropy = [seed, stored_trials] + ([zlib.crc32(worker.encode("utf-8"))] if worker else [])
    return int(numpy.random.SeedSequence(entropy).generate_state(1)[0])


def _sampler(settings: OptimizationSettings, stored_trials: int, worker: str = "") -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(
        n_startup_trials=random_trial_count(settings), multivariate=True, constant_liar=True,
        seed=sampler_seed(settings.seed, stored_trials, worker),
    )


def _stored_trial_count(storage: JournalStorage) -> int | None:
    """Trials in the study (of any state), or None when the journal holds no study yet."""
    try:
        study_id = storage.get_study_id_from_name(STUDY_NAME)
    except KeyError:
        return None
    return len(storage.get_all_trials(study_id, deepcopy=False))


def open_study(run_path: Path, settings: OptimizationSettings,
               log: Callable[[str], None] = print, location: StudyLocation = StudyLocation(),
               worker: str = "") -> optuna.Study:
    """Create the study in the run folder, or load it to add trials (the one writer: the worker).

    A study in an RDB storage (``location.url``) was created by the starter (:func:`create_shared_study`); every
    worker loads it with heartbeats on, so a trial whose worker dies is failed and retried by the others.
    """
    if location.url is not None:
        storage = open_rdb_storage(location, settings.heartbeat_seconds)
        with database_errors(location, "open the study"):
            study_id = _shared_study_id(storage, location)
            sampler = _sampler(settings, len(storage.get_all_trials(study_id, deepcopy=False)), worker)
            return optuna.load_study(study_name=location.name, storage=storage, sampler=sampler)
    path = study_path(run_path)
    cut, side_file = cut_partial_record(path)
    if cut and side_file is not None:
        log(f"{path.name} ended in a partial record ({cut} bytes, left by a full disk or a power loss); it was cut "
            f"off before appending and kept in {side_file.name}")
    with storage_errors(path, "open the Optuna study"):
        storage = JournalStorage(JournalFileBackend(str(path)))
        stored = _stored_trial_count(storage)
        sampler = _sampler(settings, stored or 0)
        if stored is None:
            return optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=study_directions(settings),
                                       sampler=sampler)
        return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler)


def create_shared_study(location: StudyLocation, config: str, capability_objective: bool = False) -> None:
    """Create the study of a new run in an RDB storage, recording its settings for workers that join by URL.

    Run by the starter before any worker exists, so the storage's tables and the study are made once, and a name
    already taken is a user error before anything runs.
    """
    storage = open_rdb_storage(location)
    with database_errors(location, "create the study"):
        try:
            study = optuna.create_study(study_name=location.name, storage=storage,
                                        directions=THREE_OBJECTIVES if capability_objective else TWO_OBJECTIVES)
        except optuna.exceptions.DuplicatedStudyError:
            raise UserInputError(
                f"{location.describe()} already exists. Join it with `heretic-tui abliterate --join "
                f"{redacted(location.url or '')} --study {location.name}`, or give the new run another --study NAME."
            ) from None
        study.set_user_attr(CONFIG_ATTRIBUTE, config)


def _shared_study_id(storage: Any, location: StudyLocation) -> int:
    try:
        return storage.get_study_id_from_name(location.name)
    except KeyError:
        raise UserInputError(
            f"{redacted(location.url or '')} holds no study named '{location.name}' (studies there: "
            f"{', '.join(study_names(storage)[:20]) or 'none'}); the database may have been reset. Start a new run "
            "with --storage."
        ) from None


def read_study(run_path: Path) -> optuna.Study:
    """Load the run's study without writing to its journal (export, report, compare, screens)."""
    location = location_of_run(run_path)
    if location.url is not None:
        storage = open_rdb_storage(location)
        with database_errors(location, "read the study"):
            _shared_study_id(storage, location)
            return optuna.load_study(study_name=location.name, storage=storage)
    path = study_path(run_path)
    if not path.is_file():
        raise UserInputError(f"{run_path} has no Optuna study ({STUDY_FILE}); it is not an abliteration run.")
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=JournalStorage(JournalFileBackend(str(path))))
    except KeyError:
        raise UserInputError(
            f"{path} holds no study named '{STUDY_NAME}', so it was not written by heretic-tui. Point at the run "
            "folder of an abliteration run."
        ) from None
    except (ValueError, json.JSONDecodeError) as error:
        raise UserInputError(
            f"{path} is damaged inside (not only at its end): {error}. The trials before the damaged line cannot be "
            "told apart from it by Optuna; restore the file from a backup, or start a new run."
        ) from None


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a killed worker as FAILED so they neither count nor block; returns their numbers."""
    stale = [trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in stale:
        study.tell(number, state=TrialState.FAIL)
    return stale


@dataclass(frozen=True)
class DepthPrior:
    """Where in the model's depth a sampled value lands: a monotone piecewise-linear map from [0, 1] onto [0, 1].

    Optuna samples the value uniformly at first, so each stretch of depth gets prior mass in proportion to the share
    of [0, 1] it is mapped from. This keeps most of the mass where refusal usually lives while every layer, the
    first and the last included, stays reachable; TPE then moves the mass to wherever the trials do well.
    """

    knots: tuple[tuple[float, float], ...]
    """(sampled value, fraction of depth) pairs from (0, 0) to (1, 1), both increasing."""

    def fraction(self, value: float) -> float:
        return float(numpy.interp(value, [knot[0] for knot in self.knots], [knot[1] for knot in self.knots]))


DIRECTION_DEPTH = DepthPrior(((0.0, 0.0), (0.1, 0.4), (0.8, 0.9), (1.0, 1.0)))
"""Which layer's refusal direction a global trial uses. Harmful and harmless prompts separate most clearly a little
past the middle of the stack (Arditi et al. 2024), so 0.4-0.9 of the depth keeps 70% of the prior; the top tenth,
where a refusal written only by the last layers is visible, gets 20%, and the lower layers 10%."""

KERNEL_PEAK_DEPTH = DepthPrior(((0.0, 0.0), (0.1, 0.6), (1.0, 1.0)))
"""Where a component's ablation is strongest: the upper 40% of the layers, which write refusal into the residual
stream in most models, keeps 90% of the prior, and every lower layer the rest."""


def suggest_parameters(trial: optuna.Trial, layer_count: int,
                       methods: MethodChoices = MethodChoices()) -> TrialParameters:
    """The search space, in layer units so it scales with the model's depth; any layer can be chosen.

    Positions are sampled as values in [0, 1] and placed in the depth by :class:`DepthPrior`; everything is sampled
    on every trial, even what a trial's scope does not use, because multivariate TPE needs a fixed set of
    parameters. Trial results keep the positions in layer units (:meth:`TrialParameters.to_flat`).

    A method setting set to ``search`` is a categorical parameter; a fixed one is recorded in the trial's
    parameters without being sampled. A component the study never edits gets no kernel parameters.
    """
    last = max(layer_count - 1, 1)
    scope = trial.suggest_categorical("direction_scope", ["global", "per_layer"])
    index = DIRECTION_DEPTH.fraction(trial.suggest_float("direction_depth", 0.0, 1.0)) * last
    chosen = {
        name: trial.suggest_categorical(name, list(options)) if getattr(methods, name) == SEARCH
        else getattr(methods, name)
        for name, options in (("direction_method", DIRECTION_METHODS), ("ablation_method", ABLATION_METHODS),
                              ("edited_components", COMPONENT_CHOICES))
    }
    searched_kinds = COMPONENTS if methods.edited_components == SEARCH else edited_kinds(methods.edited_components)
    kernels = {}
    for component in COMPONENTS:
        if component not in searched_kinds:
            continue
        max_weight = trial.suggest_float(f"{component}.max_weight", *methods.weight_range)
        position = KERNEL_PEAK_DEPTH.fraction(trial.suggest_float(f"{component}.max_weight_depth", 0.0, 1.0)) * last
        fraction = trial.suggest_float(f"{component}.min_weight_fraction", 0.0, 1.0)
        distance = trial.suggest_float(f"{component}.min_weight_distance", 1.0, max(1.0, 0.6 * last))
        kernels[component] = KernelParameters(max_weight, position, fraction * max_weight, distance)
    return TrialParameters(scope, index, kernels, **chosen)


def ask_untried(study: optuna.Study, layer_count: int,
                methods: MethodChoices = MethodChoices()) -> tuple[optuna.Trial, TrialParameters]:
    """A new trial whose parameters no completed trial of the study has used.

    The sampler's seed already differs on every resume; this guard catches what remains (an exact repeat),
    marks such a trial failed with the number it repeats, reseeds the sampler and samples again.
    """
    tried = {_parameter_key(trial.params): trial.number for trial in completed_trials(study)}
    for _ in range(RESAMPLE_ATTEMPTS):
        trial = study.ask()
        parameters = suggest_parameters(trial, layer_count, methods)
        repeated = tried.get(_parameter_key(trial.params))
        if repeated is None:
            return trial, parameters
        trial.set_user_attr("repeats_trial", repeated)
        study.tell(trial, state=TrialState.FAIL)
        study.sampler.reseed_rng()
    raise RuntimeError(
        f"The sampler proposed parameters that were already tried {RESAMPLE_ATTEMPTS} times in a row; the search "
        "space seems exhausted."
    )


def _parameter_key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def trial_result(trial: FrozenTrial) -> TrialResult:
    return TrialResult(
        number=trial.number,
        refusals=int(trial.values[1]),
        kl=float(trial.values[0]),
        seconds=float(trial.user_attrs.get("seconds", 0.0)),
        apply_reset_seconds=float(trial.user_attrs.get("apply_reset_seconds", 0.0)),
        params=dict(trial.user_attrs.get("parameters", {})),
        worker=str(trial.user_attrs.get(WORKER_ATTRIBUTE, "")),
        capability=float(trial.values[2]) if len(trial.values) > 2 else None,
    )


def pareto_front(results: Sequence[TrialResult]) -> list[int]:
    """Trial numbers no other trial beats on KL and refusals (and capability, in a study with that objective), by
    refusals then KL.

    Optuna decides the front (``study.best_trials`` of an in-memory study holding these results), so screens and
    recorded runs that only have results, not the study, get exactly the front the study itself has. Trials with
    identical scores are all on it. The front is over three values when every trial has a capability score.
    """
    if not results:
        return []
    three = all(result.capability is not None for result in results)
    scratch = optuna.create_study(directions=THREE_OBJECTIVES if three else TWO_OBJECTIVES)
    scratch.add_trials([
        optuna.trial.create_trial(values=[result.kl, float(result.refusals)]
                                  + ([float(result.capability or 0.0)] if three else []))
        for result in results
    ])
    front = [results[trial.number] for trial in scratch.best_trials]
    return [result.number for result in sorted(front, key=lambda item: (item.refusals, item.kl, item.number))]


def choose_trial(results: Sequence[TrialResult], max_kl: float) -> TrialResult | None:
    """The Pareto trial with the fewest refusals whose KL is within ``max_kl`` (else the lowest-KL one)."""
    if not results:
        return None
    front_numbers = set(pareto_front(results))
    front = [result for result in results if result.number in front_numbers]
    within = [result for result in front if result.kl <= max_kl]
    if within:
        return min(within, key=lambda item: (item.refusals, item.kl, item.number))
    return min(front, key=lambda item: (item.kl, item.refusals, item.number))


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
