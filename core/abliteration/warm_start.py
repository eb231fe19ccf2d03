"""Warm start: known-good trials enqueued before the search, from a model-family profile and another run's front.

A study that starts cold spends its random trials rediscovering where refusal usually lives. Enqueued trials
(``optuna.Study.enqueue_trial``) are the first ones the sampler hands out, they count toward
``optimization.trials`` like any other, and TPE learns from them at once. They come from two places:

- a **profile**: a TOML file of trials for one model family (its ``model_types``, the transformers model type),
  shipped in ``profiles/`` beside this module or written by the user in the user config folder's ``profiles/``
  (which wins), or named by ``optimization.warm_start_profile``. Profiles are data, not code.
- **another run** (``optimization.warm_start_run``, ``--warm-start RUN``): the trials of its Pareto front.

Both are kept in **layer fractions** (0 is the first layer, 1 the last), so a profile fits a model of any depth
of its family and a front found on a 24-layer model can start a 36-layer one. A profile trial looks like::

    [[trials]]
    direction_scope = "per_layer"   # or "global"
    direction_layer = 0.62          # the direction's layer, as a fraction of the depth
    [trials.attention]              # and [trials.mlp]: the kernel of each component
    max_weight = 1.1
    peak_layer = 0.8                # where the kernel peaks, as a fraction of the depth
    min_weight_fraction = 0.4       # min_weight as a fraction of max_weight
    min_weight_distance = 0.3       # how far the kernel reaches, as a fraction of the depth

A trial is not enqueued again when the study already holds it (waiting, running or completed: a resumed run),
and never beyond the trial budget. Each profile file says in a comment where its values were measured.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy
import optuna
import platformdirs
from optuna.trial import TrialState

from heretic_tui.core.abliteration.ablation import COMPONENTS
from heretic_tui.core.abliteration.study import DIRECTION_DEPTH, KERNEL_PEAK_DEPTH, DepthPrior, pareto_front
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import APP_NAME, OptimizationSettings

AUTO, NONE = "auto", "none"
PROFILE_FOLDER = "profiles"
DIRECTIONS_FILE = "directions.safetensors"
SOURCE_ATTRIBUTE = "warm_start"
"""The user attribute an enqueued trial carries: where it came from."""

SCOPES = ("global", "per_layer")
KERNEL_KEYS = ("max_weight", "peak_layer", "min_weight_fraction", "min_weight_distance")
LONGEST_REACH = 0.6
"""The kernel's widest reach in the search space, as a fraction of the depth (``suggest_parameters`` samples
min_weight_distance from 1 layer to this much of the depth); a carried-over reach is kept inside it."""


@dataclass(frozen=True)
class WarmTrial:
    """One trial in layer fractions, independent of the model's depth."""

    direction_scope: str
    direction_layer: float
    kernels: dict[str, dict[str, float]]
    """component -> KERNEL_KEYS -> value."""
    choices: dict[str, str] = field(default_factory=dict)
    """Categorical parameters carried over as they are (e.g. a searched direction method)."""

    def study_parameters(self, layer_count: int) -> dict[str, Any]:
        """The trial as the values ``suggest_parameters`` samples, for a model of ``layer_count`` layers."""
        last = max(layer_count - 1, 1)
        parameters: dict[str, Any] = dict(self.choices)
        parameters["direction_scope"] = self.direction_scope
        parameters["direction_depth"] = sampled_value(DIRECTION_DEPTH, self.direction_layer)
        widest = max(1.0, LONGEST_REACH * last)
        for component, kernel in self.kernels.items():
            parameters[f"{component}.max_weight"] = kernel["max_weight"]
            parameters[f"{component}.max_weight_depth"] = sampled_value(KERNEL_PEAK_DEPTH, kernel["peak_layer"])
            parameters[f"{component}.min_weight_fraction"] = kernel["min_weight_fraction"]
            parameters[f"{component}.min_weight_distance"] = min(max(kernel["min_weight_distance"] * last, 1.0),
                                                                 widest)
        return parameters

    @classmethod
    def from_flat(cls, flat: dict[str, Any], layer_count: int) -> WarmTrial:
        """A completed trial's parameters (``TrialParameters.to_flat``, in layer units) as fractions."""
        last = max(layer_count - 1, 1)
        kernels = {}
        for component in COMPONENTS:
            if f"{component}.max_weight" not in flat:
                continue
            max_weight = float(flat[f"{component}.max_weight"])
            kernels[component] = {
                "max_weight": max_weight,
                "peak_layer": _unit(float(flat[f"{component}.max_weight_position"]) / last),
                "min_weight_fraction": (_unit(float(flat[f"{component}.min_weight"]) / max_weight)
                                        if max_weight else 0.0),
                "min_weight_distance": float(flat[f"{component}.min_weight_distance"]) / last,
            }
        choices = {key: value for key, value in flat.items() if isinstance(value, str) and key != "direction_scope"}
        return cls(str(flat["direction_scope"]), _unit(float(flat["direction_index"]) / last), kernels, choices)


def _unit(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def sampled_value(prior: DepthPrior, fraction: float) -> float:
    """The value in [0, 1] that ``prior`` places at ``fraction`` of the depth (its inverse map)."""
    return float(numpy.interp(fraction, [knot[1] for knot in prior.knots], [knot[0] for knot in prior.knots]))


@dataclass
class WarmStart:
    """The trials to enqueue and where they came from."""

    trials: list[tuple[str, WarmTrial]] = field(default_factory=list)
    """(source, trial) pairs, in the order they are enqueued."""
    sources: list[str] = field(default_factory=list)
    """Each source used, for the log and report.json (empty: a cold start)."""
    notes: list[str] = field(default_factory=list)
    """Why a source was not used (unknown family, a profile turned off)."""

    def describe(self, enqueued: int) -> str:
        if not self.sources:
            reasons = "; ".join(self.notes or ["nothing to start from"])
            return f"warm start: none, the search starts cold ({reasons})"
        return (f"warm start: {enqueued} of {len(self.trials)} trials enqueued first, from "
                + "; ".join(self.sources) + ("" if not self.notes else " (" + "; ".join(self.notes) + ")"))

    def report(self, enqueued: int) -> dict[str, Any]:
        return {"sources": list(self.sources), "trials": len(self.trials), "enqueued": enqueued,
                "notes": list(self.notes)}


def user_profile_folder() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / PROFILE_FOLDER


def shipped_profiles() -> list[tuple[str, str]]:
    """(name, TOML text) of every profile shipped with heretic-tui."""
    folder = resources.files("heretic_tui.core.abliteration").joinpath(PROFILE_FOLDER)
    if not folder.is_dir():
        return []
    return sorted((item.name, item.read_text(encoding="utf-8")) for item in folder.iterdir()
                  if item.name.endswith(".toml"))


def parse_profile(text: str, where: str) -> tuple[list[str], list[WarmTrial]]:
    """A profile's model types and trials; anything malformed is bad input naming the file and key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserInputError(
            f"The warm-start profile {where} is not valid TOML ({error}). Fix the file or remove it; see the module "
            "doc of heretic_tui.core.abliteration.warm_start for the format."
        ) from None
    types = data.get("model_types")
    if not isinstance(types, list) or not types or not all(isinstance(item, str) for item in types):
        raise UserInputError(f"The warm-start profile {where} needs model_types, a list of transformers model types "
                             "(e.g. model_types = [\"llama\"]).")
    entries = data.get("trials")
    if not isinstance(entries, list) or not entries:
        raise UserInputError(f"The warm-start profile {where} has no [[trials]]; add at least one.")
    return types, [_profile_trial(entry, f"{where}, trial {index + 1}") for index, entry in enumerate(entries)]


def _number(table: dict[str, Any], key: str, where: str, lowest: float = 0.0, highest: float = 1.0) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lowest <= value <= highest:
        raise UserInputError(f"The warm-start profile {where}: {key} is {value!r}; it must be a number from {lowest} "
                             f"to {highest}.")
    return float(value)


def _profile_trial(entry: Any, where: str) -> WarmTrial:
    if not isinstance(entry, dict):
        raise UserInputError(f"The warm-start profile {where} is not a table.")
    scope = entry.get("direction_scope")
    if scope not in SCOPES:
        raise UserInputError(f"The warm-start profile {where}: direction_scope is {scope!r}; it must be one of "
                             f"{', '.join(SCOPES)}.")
    kernels = {}
    for component in COMPONENTS:
        table = entry.get(component)
        if not isinstance(table, dict):
            raise UserInputError(f"The warm-start profile {where} has no [trials.{component}] table with "
                                 f"{', '.join(KERNEL_KEYS)}.")
        kernels[component] = {
            "max_weight": _number(table, "max_weight", f"{where}, {component}", 0.0, 10.0),
            "peak_layer": _number(table, "peak_layer", f"{where}, {component}"),
            "min_weight_fraction": _number(table, "min_weight_fraction", f"{where}, {component}"),
            "min_weight_distance": _number(table, "min_weight_distance", f"{where}, {component}"),
        }
    return WarmTrial(scope, _number(entry, "direction_layer", where), kernels)


def profile_trials(settings: OptimizationSettings, model_types: list[str]) -> tuple[str | None, list[WarmTrial],
                                                                                      str | None]:
    """(source, trials, note) of the profile for this model: a named file, or the family's profile."""
    choice = settings.warm_start_profile.strip()
    if choice.lower() == NONE:
        return None, [], "optimization.warm_start_profile is 'none'"
    if choice.lower() != AUTO:
        path = Path(choice).expanduser()
        if not path.is_file():
            raise UserInputError(f"optimization.warm_start_profile = {choice!r} is not a file. Point it at a profile "
                                 "TOML file, or set it to 'auto' (the family's profile) or 'none'.")
        _, trials = parse_profile(path.read_text(encoding="utf-8"), str(path))
        return f"profile {path}", trials, None
    candidates: list[tuple[str, str]] = []
    folder = user_profile_folder()
    if folder.is_dir():
        candidates += sorted((str(item), item.read_text(encoding="utf-8")) for item in folder.glob("*.toml"))
    candidates += [(f"the shipped profile {name}", text) for name, text in shipped_profiles()]
    for where, text in candidates:
        types, trials = parse_profile(text, where)
        if any(model_type in types for model_type in model_types):
            return f"{where} (model type {'/'.join(model_types)})", trials, None
    return None, [], f"no profile for model type {'/'.join(model_types)}"


def run_layer_count(run_path: Path) -> int:
    """The depth of the model another run abliterated, from its cached directions (one per layer)."""
    from safetensors import safe_open

    path = run_path / DIRECTIONS_FILE
    try:
        with safe_open(str(path), framework="pt") as opened:
            return int(opened.get_slice("directions").get_shape()[0])
    except Exception as error:
        raise UserInputError(
            f"optimization.warm_start_run: {run_path} has no readable {DIRECTIONS_FILE} ({type(error).__name__}), so "
            "its trials cannot be carried over to another depth. Point it at an abliteration run that got past its "
            "directions phase."
        ) from None


def run_trials(run_path: Path) -> list[WarmTrial]:
    """The Pareto-front trials of another run, by refusals then KL, in layer fractions."""
    from heretic_tui.core.abliteration.study import completed_trials, read_study, trial_result

    if not run_path.is_dir():
        raise UserInputError(f"optimization.warm_start_run = '{run_path}' is not a folder. Point it (or "
                             "--warm-start) at the folder of an earlier abliteration run.")
    layer_count = run_layer_count(run_path)
    results = [trial_result(trial) for trial in completed_trials(read_study(run_path))]
    by_number = {result.number: result for result in results}
    return [WarmTrial.from_flat(by_number[number].params, layer_count) for number in pareto_front(results)
            if by_number[number].params]


def check_warm_start(settings: OptimizationSettings) -> None:
    """Every check that needs no model: the named profile file and the run folder (raises UserInputError)."""
    if settings.warm_start_profile.strip().lower() not in (AUTO, NONE):
        profile_trials(settings, [])
    if settings.warm_start_run.strip():
        run_trials(Path(settings.warm_start_run.strip()).expanduser())


def plan_warm_start(settings: OptimizationSettings, model_types: list[str], run_path: Path | None = None) -> WarmStart:
    """The trials to enqueue: the other run's front first (the more specific), then the profile's, at most
    ``optimization.warm_start_trials`` in all."""
    plan = WarmStart()
    if settings.warm_start_trials == 0:
        plan.notes.append("optimization.warm_start_trials is 0")
        return plan
    other = settings.warm_start_run.strip()
    if other:
        other_path = Path(other).expanduser()
        if run_path is not None and other_path.resolve() == run_path.resolve():
            plan.notes.append("optimization.warm_start_run is this run itself")
        else:
            trials = run_trials(other_path)
            plan.sources.append(f"the Pareto front of {other_path} ({len(trials)} trials)")
            plan.trials += [(f"run {other_path}", trial) for trial in trials]
    source, trials, note = profile_trials(settings, model_types)
    if source is not None:
        plan.sources.append(source)
        plan.trials += [(source, trial) for trial in trials]
    if note is not None:
        plan.notes.append(note)
    del plan.trials[settings.warm_start_trials:]
    return plan


def _same(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for key, value in wanted.items():
        if key not in existing:
            return False
        other = existing[key]
        if isinstance(value, str) or isinstance(other, str):
            if value != other:
                return False
        elif not numpy.isclose(float(value), float(other), rtol=1e-9, atol=1e-12):
            return False
    return True


def enqueue_warm_start(study: optuna.Study, plan: WarmStart, layer_count: int, trial_budget: int) -> int:
    """Enqueue the plan's trials that the study does not hold yet, within the budget; returns how many.

    A trial counts as held when a waiting, running or completed trial has the same values for every parameter the
    warm-start trial fixes (failed trials do not count: they are run again). The budget is the study's total
    trial count; waiting trials already count toward it, so a resumed run never enqueues past it.
    """
    held_states = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    held = study.get_trials(deepcopy=False, states=held_states)
    known = [trial.system_attrs.get("fixed_params", trial.params) if trial.state == TrialState.WAITING
             else trial.params for trial in held]
    room = trial_budget - len(held)
    enqueued = 0
    for source, trial in plan.trials:
        if enqueued >= room:
            break
        parameters = trial.study_parameters(layer_count)
        if any(_same(existing, parameters) for existing in known):
            continue
        study.enqueue_trial(parameters, user_attrs={SOURCE_ATTRIBUTE: source})
        known.append(parameters)
        enqueued += 1
    return enqueued


def model_types(model: Any) -> list[str]:
    """The model's transformers model types a profile can name: its own and its language model's."""
    from heretic_tui.core.models.layers import text_config

    types = [str(getattr(config, "model_type", "") or "") for config in (model.config, text_config(model))]
    return list(dict.fromkeys(item for item in types if item))
