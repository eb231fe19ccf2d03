"""``heretic-tui evaluate``: lm-eval tasks on a model, a run's trial or an export, beside the original it came from.

What is compared follows from what the model is: a run's trial is measured on the run's model without and with the
trial's edit (one load; the edit goes into the weights, or through hooks for a quantized model, and is undone), an
export or fine-tune folder beside the source model its heretic.json names (one model in memory at a time), and any
other model (``demo``, a folder, a cached hub id, an adapter folder) on its own. Everything is checked (the model, the
trial, every task and its data) before a model loads, so a typo or an uncached dataset costs nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heretic_tui.core.capability.harness import HarnessRequest, check_tasks, harness_version, run_tasks, task_manager
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.references import KIND_TRIAL, ModelReference, parse_model_reference
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings

HARNESS_NAME = "lm-eval"


@dataclass
class EvaluationOutcome:
    """What one ``evaluate`` measured and where it was written."""

    label: str
    original_label: str | None
    original: dict[str, Any] | None
    results: dict[str, Any]
    written: list[Path]
    notes: list[str]


def _is_run_folder(location: str) -> bool:
    return (Path(location) / "job.json").is_file()


def resolve_reference(model: str, trial: int | None) -> ModelReference:
    """MODEL and --trial as one reference; a run folder needs a trial, a trial needs a run folder."""
    reference = parse_model_reference(model)
    if trial is not None:
        if reference.kind == KIND_TRIAL:
            raise UserInputError(f"{model!r} already names trial {reference.trial}; leave out --trial {trial}.")
        if not _is_run_folder(reference.location):
            raise UserInputError(
                f"--trial {trial} needs MODEL to be an abliteration run folder, and {reference.location} is not one "
                "(it has no job.json). Name the run folder, or leave out --trial to evaluate the model itself."
            )
        return ModelReference(model, KIND_TRIAL, reference.location, trial)
    if reference.kind != KIND_TRIAL and _is_run_folder(reference.location):
        raise UserInputError(
            f"{reference.location} is a run folder; name the trial to evaluate with --trial N (report.json 'pareto' "
            "lists the best ones, 'chosen_trial' the one heretic-tui picked)."
        )
    return reference


def _release(loaded: Any) -> None:
    import torch

    loaded.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _evaluate_trial(reference: ModelReference, request: HarnessRequest, manager: Any, skip_original: bool,
                    log: Callable[[str], None]) -> tuple[dict[str, Any] | None, dict[str, Any], RunDirectory]:
    from heretic_tui.core.abliteration.ablation import Abliterator
    from heretic_tui.core.abliteration.activation_ablation import ActivationAblation, has_quantized_layers
    from heretic_tui.core.abliteration.direction_set import DirectionSet
    from heretic_tui.core.abliteration.study import find_trial, read_study
    from heretic_tui.core.capability.trial_checks import trial_applied
    from heretic_tui.core.models.loading import load_model
    from heretic_tui.core.shipping.export import open_abliteration_run, run_settings

    run = open_abliteration_run(reference.location)
    frozen = find_trial(read_study(run.path), int(reference.trial or 0))
    directions_path = run.path / "directions.safetensors"
    if not directions_path.is_file():
        raise UserInputError(f"{run.path} has no refusal directions yet (the run stopped before computing them), so "
                             "no trial of it can be applied.")
    settings = run_settings(run)
    log(f"loading {settings.model.model}")
    loaded = load_model(settings.model, log=log)
    directions = DirectionSet.read(directions_path)[0]
    quantized = has_quantized_layers(loaded.model)
    abliterator = None if quantized else Abliterator(loaded.model, directions)
    hooks = ActivationAblation(loaded.model, directions) if quantized else None
    original = None
    if not skip_original:
        log(f"lm-eval on the original model ({', '.join(request.tasks)})")
        original = run_tasks(loaded, request, manager)
    log(f"lm-eval on trial {frozen.number}")
    with trial_applied(abliterator, hooks, frozen.user_attrs["parameters"]):
        edited = run_tasks(loaded, request, manager)
    _release(loaded)
    return original, edited, run


def _folder_source(reference: ModelReference) -> str | None:
    """The model an export or fine-tune folder was made from (heretic.json ``source_model``), when it is known."""
    from heretic_tui.core.shipping.metadata import read_metadata

    if not reference.is_export:
        return None
    source = read_metadata(Path(reference.location)).get("source_model")
    return str(source) if source else None


def _evaluate_model(reference: ModelReference, settings: Settings, request: HarnessRequest, manager: Any,
                    log: Callable[[str], None]) -> dict[str, Any]:
    from heretic_tui.core.shipping.compare import load_compared_model

    log(f"loading {reference.label}")
    loaded = load_compared_model(reference, settings, log)
    log(f"lm-eval on {reference.label} ({', '.join(request.tasks)})")
    try:
        return run_tasks(loaded, request, manager)
    finally:
        _release(loaded)


def evaluate(model: str, trial: int | None, request: HarnessRequest, settings: Settings, *,
             skip_original: bool = False, log: Callable[[str], None] = lambda text: None) -> EvaluationOutcome:
    """Check everything, run the tasks on the model (and the original), and record the results where they belong."""
    from heretic_tui.core.capability.harness_records import record_folder_evaluation, record_run_evaluation
    from heretic_tui.core.shipping.compare import check_model_reference

    version = harness_version()
    reference = resolve_reference(model, trial)
    check_model_reference(reference, settings)
    source = None if skip_original or reference.kind == KIND_TRIAL else _folder_source(reference)
    if source is not None:
        try:
            check_model_reference(parse_model_reference(source, allow_trial=False), settings)
        except UserInputError as error:
            raise UserInputError(
                f"{reference.location} was made from {source}, which is measured beside it, but: {error} Pass "
                "--skip-original to measure the folder alone."
            ) from None
    log("checking the tasks (offline)")
    manager = task_manager(request)
    check_tasks(request, manager)
    harness = {"harness": HARNESS_NAME, "version": version}
    notes: list[str] = []
    if reference.kind == KIND_TRIAL:
        original, edited, run = _evaluate_trial(reference, request, manager, skip_original, log)
        path, in_report = record_run_evaluation(run, int(reference.trial or 0), harness,
                                                _with_request(original, request), _with_request(edited, request))
        if not in_report:
            notes.append(f"a worker holds {run.path}, so report.json gets these results when it next writes it")
        return EvaluationOutcome(reference.label, None if original is None else "original", original, edited,
                                 [path] + ([run.report_path] if in_report else []), notes)
    original = None
    if source is not None:
        original = _evaluate_model(parse_model_reference(source, allow_trial=False),
                                   settings, request, manager, log)
    edited = _evaluate_model(reference, settings, request, manager, log)
    written = []
    if reference.is_export:
        written.append(record_folder_evaluation(Path(reference.location), harness, _with_request(original, request),
                                                _with_request(edited, request)))
    else:
        notes.append("the model has no heretic.json (not an export), so the results are only printed")
    return EvaluationOutcome(reference.label, source, original, edited, written, notes)


def _with_request(results: dict[str, Any] | None, request: HarnessRequest) -> dict[str, Any] | None:
    """Each task's result with the limit it was measured under (the shots are already in it)."""
    if results is None:
        return None
    return {task: {**result, "limit": request.limit} for task, result in results.items()}
