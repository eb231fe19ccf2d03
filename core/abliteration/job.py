"""The abliteration pipeline as a worker job: load, prompts, residuals, directions, baseline, trials, report.

The parent side (:func:`preflight`, :func:`start_abliteration`) checks the user's input before anything is written,
so bad input exits with code 2 and leaves no run folder behind. The worker side (:func:`run`) caches the
directions in the run folder so a resumed run goes straight back to its trials.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import optuna
import torch
from safetensors import SafetensorError

from heretic_tui.core.abliteration.ablation import Abliterator
from heretic_tui.core.abliteration.activation_ablation import ActivationAblation, has_quantized_layers
from heretic_tui.core.abliteration.batched_evaluation import BatchedEvaluator, choose_trial_batch, sample_trial
from heretic_tui.core.abliteration.direction_set import (
    DirectionSet,
    build_direction_set,
    on_device,
    summarize_diagnostics,
)
from heretic_tui.core.abliteration.directions import separation
from heretic_tui.core.abliteration.protection import (
    CAPABILITY_SETTING,
    GENERAL_TEXT_SETTING,
    load_reference_prompts,
    protected_basis,
)
from heretic_tui.core.abliteration.methods import DIRECTION_SETTINGS, MethodChoices, method_record
from heretic_tui.core.abliteration.winsorization import winsorize
from heretic_tui.core.errors import JobCancelled, UserInputError
from heretic_tui.core.abliteration.evaluation import Evaluator
from heretic_tui.core.abliteration.relabeling import SCORING_KEY, apply_labels, scoring_section, trial_entry_counts
from heretic_tui.core.abliteration.responses import BASELINE, trial_counts
from heretic_tui.core.abliteration.scoring.selection import make_scorer
from heretic_tui.core.abliteration.trial_judgement import judge_responses
from heretic_tui.core.capability.harness_records import evaluation_entry
from heretic_tui.core.capability.objective import score_applied_trial, score_hooked_trials
from heretic_tui.core.capability.trial_checks import check_chosen_trial
from heretic_tui.core.abliteration.warm_start import check_warm_start, enqueue_warm_start, model_types, plan_warm_start
from heretic_tui.core.runs.events import (
    BaselineMeasured,
    Metrics,
    StudyEstimate,
    TrialCapability,
    TrialFinished,
    TrialStarted,
)
from heretic_tui.core.operations.trial_time import estimate_study
from heretic_tui.core.atomic_files import write_bytes_atomically, write_json_atomically
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import prepare_run, start_job
from heretic_tui.core.models.batch_size import choose_batch_size
from heretic_tui.core.models.chat_template import PLAIN, PromptStyle, format_chat
from heretic_tui.core.models.layers import text_config
from heretic_tui.core.models.loading import (
    LoadedModel,
    check_model,
    context_length,
    load_config,
    load_model,
    resolve_model_location,
)
from heretic_tui.core.models.residuals import last_token_residuals
from heretic_tui.core.models.thinking import plan_thinking, reasoning_token_allowance
from heretic_tui.core.abliteration.study import (
    SAMPLER,
    TrialResult,
    allowed_refusals,
    ask_untried,
    choose_trial,
    completed_trials,
    constrain_refusals,
    fail_stale_trials,
    has_capability_objective,
    objective_values,
    open_study,
    pareto_front,
    random_trial_count,
    trial_result,
)
from heretic_tui.core.abliteration.search_plan import pass_sizes, trials_to_ask
from heretic_tui.core.abliteration.prompts import Prompt, check_prompts_fit, load_prompt_records, resolve_auto
from heretic_tui.core.abliteration.study_storage import StudyLocation, database_errors, location_from_arguments
from heretic_tui.core.abliteration.workers import (
    WORKER_ATTRIBUTE,
    give_back,
    is_surplus,
    retried_number,
    retry_abandoned_trials,
    room_for_another,
    share_directions,
    start_heartbeat,
    still_running,
    wait_for_others,
    worker_name,
)
from heretic_tui.core.settings import Settings
from heretic_tui.core.runs.worker import JobContext

DIRECTIONS_FILE = "directions.safetensors"
STATE_FILE = "state.json"
PROMPT_SETTINGS = ("good_prompts", "bad_prompts", "good_eval_prompts", "bad_eval_prompts")


def resolved_sources(settings: Settings) -> dict[str, str]:
    return {name: resolve_auto(getattr(settings.prompts, name), name, settings.model.model) for name in PROMPT_SETTINGS}


def load_all_prompts(settings: Settings) -> dict[str, list[str]]:
    return {name: [record.text for record in records] for name, records in load_all_prompt_records(settings).items()}


def load_all_prompt_records(settings: Settings) -> dict[str, list[Prompt]]:
    prompts = {}
    for name, source in resolved_sources(settings).items():
        limit = settings.prompts.max_direction_prompts if name in ("good_prompts", "bad_prompts") else settings.prompts.max_eval_prompts
        prompts[name] = load_prompt_records(source, limit, origin=_origin(name, source))
    return prompts


def _origin(name: str, source: str) -> str:
    return f"prompts.{name} ({source})"


def check_prompt_lengths(tokenizer: Any, config: Any, settings: Settings, prompts: dict[str, list[Prompt]]) -> None:
    """Every prompt set fits the model's context; the harmful evaluation prompts with room for the judged answer
    (and for a thinking model's reasoning before it)."""
    context = context_length(config)
    sources = resolved_sources(settings)
    thinking = plan_thinking(tokenizer, settings.abliteration, settings.model.model)
    judged = settings.abliteration.refusal_max_tokens + reasoning_token_allowance(thinking, tokenizer)
    for name, records in prompts.items():
        answer_tokens = judged if name == "bad_eval_prompts" else 0
        check_prompts_fit(tokenizer, context, settings.prompts.system_prompt, records, _origin(name, sources[name]),
                          answer_tokens)


def preflight(settings: Settings) -> None:
    """Every check that needs no weights: model folder and chat template, prompt sources, prompt lengths.

    Raises UserInputError. The tokenizer and config are cheap to load; the demo model may not be built yet, so its
    prompt lengths are checked by the worker right after loading (before any residual is computed).
    """
    if settings.model.quantization != "none" and settings.abliteration.apply == "weights":
        raise UserInputError(
            f"model.quantization = '{settings.model.quantization}' cannot be used with abliteration.apply = "
            "'weights': that edits the weights themselves, which needs them unquantized. Set apply = 'hooks' (the "
            "trials are applied to the layers' outputs and the quantized weights are never touched), or "
            "quantization = 'none'."
        )
    tokenizer = check_model(settings.model)
    prompts = load_all_prompt_records(settings)
    load_reference_prompts(settings)
    check_warm_start(settings.optimization)
    if tokenizer is not None:
        config = load_config(resolve_model_location(settings.model.model), settings.model)
        check_prompt_lengths(tokenizer, config, settings, prompts)


def start_abliteration(settings: Settings, run_dir: Path | None = None, resume: bool = False,
                       export_chosen: bool = False) -> JobHandle:
    """Start (or resume) an abliteration run in a worker process; see the module doc for what is checked first."""
    run = prepare_run("abliterate", settings, run_dir, resume, preflight, "an abliteration")
    return start_job("abliterate", settings, run, {"resume": resume, "export_chosen": export_chosen})


def direction_fingerprint(settings: Settings) -> str:
    """A digest of every setting that shapes the directions, so a resumed run whose settings changed computes them
    again instead of reusing directions its settings no longer describe."""
    shaping = {
        "model": settings.model.model,
        "revision": settings.model.revision,
        "system_prompt": settings.prompts.system_prompt,
        "max_direction_prompts": settings.prompts.max_direction_prompts,
        "sources": {name: source for name, source in resolved_sources(settings).items()
                    if name in ("good_prompts", "bad_prompts")},
        "abliteration": {name: getattr(settings.abliteration, name) for name in DIRECTION_SETTINGS},
        "thinking": [settings.abliteration.thinking, settings.abliteration.thinking_markers],
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode("utf-8")).hexdigest()


def _cached_directions(path: Path, layers: int, hidden: int,
                       fingerprint: str) -> tuple[DirectionSet | None, str | None]:
    """The directions saved earlier in this run, or None and why they cannot be used (None, None: none saved)."""
    if not path.exists():
        return None, None
    try:
        directions, stored = DirectionSet.read(path)
    except (OSError, KeyError, ValueError, SafetensorError) as error:
        return None, f"it cannot be read ({type(error).__name__}: {str(error)[:200]})"
    if stored != fingerprint:
        return None, "the settings that shape the directions are not the ones it was computed with"
    for method, values in directions.by_method.items():
        if tuple(values.shape) != (layers, hidden):
            return None, (f"its {method} directions' shape {tuple(values.shape)} is not this model's ({layers} "
                          f"layers, {hidden} wide)")
        norms = values.float().norm(dim=-1)
        if not torch.isfinite(norms).all() or not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
            return None, f"its {method} directions are not one unit direction per layer"
    protected = directions.protected
    if protected is not None and (protected.dim() != 3 or tuple(protected.shape[::2]) != (layers, hidden)
                                  or not torch.isfinite(protected).all()):
        return None, f"its protected basis of shape {tuple(protected.shape)} does not fit this model"
    return directions, None


def _prepare_directions(context: JobContext, loaded: LoadedModel, prompts: dict[str, list[str]],
                        batch_size: int, style: PromptStyle = PLAIN) -> tuple[DirectionSet, bool]:
    """The refusal directions of every method (from this run's cache when it is sound) and whether they were
    computed now. The evaluation prompts' residuals are the held-out set each method's separation is measured on.

    ``style`` is the thinking plan's rendering, so the residuals are read where the trials' answers start."""
    cached = context.run.path / DIRECTIONS_FILE
    config = text_config(loaded.model)
    fingerprint = direction_fingerprint(context.settings)
    directions, problem = _cached_directions(cached, config.num_hidden_layers, config.hidden_size, fingerprint)
    if directions is not None:
        context.log("using the refusal directions computed earlier in this run")
        return directions, False
    if problem is not None:
        context.warn(f"{DIRECTIONS_FILE} of this run cannot be used ({problem}); the refusal directions are "
                     "computed again")
    system = context.settings.prompts.system_prompt
    residuals = {}
    reference = load_reference_prompts(context.settings)
    for name, records in reference.items():
        check_prompts_fit(loaded.tokenizer, context_length(loaded.model.config), system, records,
                          f"abliteration.{name} ({getattr(context.settings.abliteration, name)})")
    sets = {name: prompts[name] for name in ("bad_prompts", "good_prompts", "bad_eval_prompts", "good_eval_prompts")}
    sets.update({name: [record.text for record in records] for name, records in reference.items()})
    total = sum(len(texts) for texts in sets.values())
    with context.phase("residuals", total, "residual stream of the last prompt token after every layer") as progress:
        done = 0
        for name, prompt_texts in sets.items():
            texts = format_chat(loaded.tokenizer, system, prompt_texts, style)
            residuals[name] = last_token_residuals(
                loaded, texts, batch_size, lambda count, base=done: progress(base + count), context.check_cancelled
            )
            done += len(texts)
    quantile = context.settings.abliteration.winsorize_quantile
    if quantile < 1.0:
        residuals.update({name: winsorize(residuals[name], quantile) for name in residuals
                          if name not in ("bad_eval_prompts", "good_eval_prompts")})
        context.log(f"residuals winsorized at the {quantile} quantile of each vector's magnitudes")
    with context.phase("directions", None, "difference of means, contrastive PCA, probes and their ensemble"):
        directions = build_direction_set(
            residuals["bad_prompts"], residuals["good_prompts"], residuals["bad_eval_prompts"],
            residuals["good_eval_prompts"], context.settings.abliteration.orthogonalize_direction, loaded.device,
        )
        strengths = separation(residuals["bad_prompts"], residuals["good_prompts"])
        context.log("separation per layer: " + ", ".join(f"{value:.2f}" for value in strengths))
        for method, values in directions.diagnostics["held_out_auc"].items():
            context.log(f"held-out AUC of the {method} direction per layer: "
                        + ", ".join(f"{value:.3f}" for value in values))
        context.log("held-out accuracy of the probe per layer: "
                    + ", ".join(f"{value:.3f}" for value in directions.diagnostics["probe_held_out_accuracy"]))
        abliteration = context.settings.abliteration
        if reference:
            def basis_on(device: Any) -> torch.Tensor | None:
                moved = {name: residuals[name].to(device) for name in (*reference, "good_prompts")}
                return protected_basis(moved["good_prompts"], moved.get(GENERAL_TEXT_SETTING),
                                       moved.get(CAPABILITY_SETTING), abliteration.helpfulness_orthogonalization,
                                       abliteration.sacred_directions)

            basis = on_device(basis_on, loaded.device)
            directions.protected = basis.cpu() if basis is not None else None
            kept = [] if basis is None else (basis.norm(dim=-1) > 0.5).sum(dim=1).tolist()
            protected = (["the unhelpfulness direction"] if abliteration.helpfulness_orthogonalization else []) + (
                [f"up to {abliteration.sacred_directions} sacred directions"] if abliteration.sacred_directions else [])
            context.log(f"every trial's direction is made orthogonal to {' and '.join(protected)} of its layer "
                        f"(protected directions per layer: {', '.join(str(count) for count in kept)})")
        write_bytes_atomically(cached, directions.to_bytes(fingerprint))
    return directions, True


def _read_state(path: Path, warn: Callable[[str], None]) -> dict[str, Any]:
    """What an earlier start of this run measured (batch size, baseline); empty, with a warning, when damaged."""
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        problem = None if isinstance(state, dict) else f"it holds a JSON {type(state).__name__}, not an object"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        state, problem = {}, f"it cannot be read as JSON ({str(error)[:200]})"
    if problem is None:
        checks = {"batch_size": (int, 1), "baseline_refusals": (int, 0), "residuals_seconds": ((int, float), 0)}
        for key, (kind, minimum) in checks.items():
            value = state.get(key, minimum)
            if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
                problem = f"its '{key}' is {value!r}"
                break
    if problem is not None:
        warn(f"{STATE_FILE} of this run cannot be used ({problem}); what it held is measured again")
        return {}
    return state


CLAIMED, SURPLUS, LOST = "claimed", "surplus", "lost"


def claim_trial(context: JobContext, study: optuna.Study, trial: optuna.Trial, target: int, worker: str) -> str:
    """Make a just-asked trial this worker's: beat for it and name the worker (CLAIMED); or give it back when the
    target is already claimed (SURPLUS); or give it up when another worker failed it meanwhile, which happens to
    a worker paused between asking and claiming (LOST; it is run again there)."""
    try:
        start_heartbeat(study, trial)
        if is_surplus(study, trial.number, target):
            give_back(study, trial)
            return SURPLUS
        trial.set_user_attr(WORKER_ATTRIBUTE, worker)
    except optuna.exceptions.UpdateFinishedTrialError:
        context.warn(f"trial {trial.number} was failed by another worker while this one was paused; it is run "
                     "again there")
        return LOST
    retried = retried_number(study, trial)
    if retried is not None:
        context.log(f"trial {trial.number} runs the parameters of trial {retried} again: its worker stopped "
                    "answering")
    return CLAIMED


def run_trial(context: JobContext, study: optuna.Study, abliterator: Abliterator, evaluator: Evaluator,
              target: int, worker: str = "", allowed: int | None = None) -> TrialResult | None:
    """One trial: sample, apply, evaluate, reset, record. A failure or cancel marks the trial failed, never lost.

    The recorded time runs from asking the sampler to just before telling it, so it holds every overhead a trial
    has (sampling, ablation, reset, events), which the benchmark compares with the bare forward passes.

    With several workers on the study (see :mod:`~heretic_tui.core.abliteration.workers`) no trial runs (None)
    while the others' trials fill the target, or when this one was asked at the same instant as the last one
    needed; a trial of a worker that stopped answering is run again here.
    """
    retry_abandoned_trials(study)
    if not room_for_another(study, target):
        wait_for_others(context.check_cancelled)
        return None
    trial_started = time.perf_counter()
    trial, parameters = ask_untried(study, abliterator.directions.shape[0],
                                    MethodChoices.from_settings(context.settings.abliteration))
    if claim_trial(context, study, trial, target, worker) != CLAIMED:
        return None
    flat = parameters.to_flat()
    context.emit(TrialStarted(number=trial.number, total=target, params=flat))
    try:
        apply_started = time.perf_counter()
        abliterator.apply(parameters)
        apply_seconds = time.perf_counter() - apply_started
        kl = evaluator.kl()
        responses = evaluator.generate(context.check_cancelled)
        capability = score_applied_trial(study, context.settings.optimization, evaluator)
        reset_started = time.perf_counter()
        abliterator.reset()
        apply_seconds += time.perf_counter() - reset_started
        refusals = evaluator.count(judge_responses(context, "trials", evaluator, trial.number, responses))
    except BaseException:
        abliterator.reset()
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise
    if not still_running(study, trial):
        context.warn(f"trial {trial.number} missed its heartbeats for too long (a paused or overloaded worker), so "
                     "another worker failed it and runs it again; its result here is not counted")
        return None
    trial.set_user_attr("parameters", flat)
    trial.set_user_attr("apply_reset_seconds", apply_seconds)
    seconds = time.perf_counter() - trial_started
    trial.set_user_attr("seconds", seconds)
    constrain_refusals(trial, refusals, allowed)
    study.tell(trial, objective_values(study, kl, refusals, capability))
    return TrialResult(trial.number, refusals, kl, seconds, apply_seconds, flat, worker, capability)


def run_trial_batch(context: JobContext, study: optuna.Study, batched: BatchedEvaluator, target: int,
                    size: int, worker: str = "", allowed: int | None = None) -> list[TrialResult]:
    """Up to ``size`` trials asked together (the sampler's constant liar keeps them apart), evaluated in shared
    forward passes through activation hooks, and told one by one; the rest is :func:`run_trial`'s.

    A trial's recorded time is its share of the batch's time, from the first ask to just before the first tell,
    so trials per minute read the same from one-at-a-time and batched runs. With several workers the batch
    stops asking once the target is claimed; an empty batch waits for the others like :func:`run_trial`.
    """
    retry_abandoned_trials(study)
    evaluator = batched.evaluator
    methods = MethodChoices.from_settings(context.settings.abliteration)
    layers = text_config(evaluator.loaded.model).num_hidden_layers
    started = time.perf_counter()
    asked: list[tuple[optuna.Trial, Any]] = []
    while len(asked) < size:
        if not room_for_another(study, target):
            if not asked:
                wait_for_others(context.check_cancelled)
            break
        trial, parameters = ask_untried(study, layers, methods)
        claim = claim_trial(context, study, trial, target, worker)
        if claim == SURPLUS:
            break
        if claim == LOST:
            continue
        context.emit(TrialStarted(number=trial.number, total=target, params=parameters.to_flat()))
        asked.append((trial, parameters))
    if not asked:
        return []
    try:
        prepare_started = time.perf_counter()
        prepared = batched.ablation.prepare([parameters for _, parameters in asked])
        prepare_seconds = time.perf_counter() - prepare_started
        kls = batched.kl(prepared)
        responses = batched.generate(prepared, context.check_cancelled)
        capabilities = score_hooked_trials(study, context.settings.optimization, batched,
                                           [parameters for _, parameters in asked])
        refusals = [evaluator.count(judge_responses(context, "trials", evaluator, trial.number, answers))
                    for (trial, _), answers in zip(asked, responses)]
    except BaseException:
        for trial, _ in asked:
            study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise
    seconds = (time.perf_counter() - started) / len(asked)
    finished = []
    for (trial, parameters), kl, count, capability in zip(asked, kls, refusals, capabilities):
        if not still_running(study, trial):
            context.warn(f"trial {trial.number} missed its heartbeats for too long (a paused or overloaded worker), "
                         "so another worker failed it and runs it again; its result here is not counted")
            continue
        flat = parameters.to_flat()
        trial.set_user_attr("parameters", flat)
        trial.set_user_attr("apply_reset_seconds", prepare_seconds / len(asked))
        trial.set_user_attr("seconds", seconds)
        trial.set_user_attr("trial_batch", len(asked))
        constrain_refusals(trial, count, allowed)
        study.tell(trial, objective_values(study, kl, count, capability))
        finished.append(TrialResult(trial.number, count, kl, seconds, prepare_seconds / len(asked), flat, worker,
                                    capability))
    return finished


def run(context: JobContext) -> dict[str, Any]:
    """The worker's entry point; a shared study's database that fails is one paragraph with exit code 3."""
    location = location_from_arguments(context.arguments)
    resume = f"resume this worker with `heretic-tui abliterate --resume --run-dir {context.run.path}`."
    with database_errors(location, "record the trials", resume):
        return _run(context, location)


def _run(context: JobContext, location: StudyLocation) -> dict[str, Any]:
    settings = context.settings
    run_path = context.run.path
    timings: dict[str, float] = {}
    state_path = run_path / STATE_FILE
    state = _read_state(state_path, context.warn)
    target = settings.optimization.trials
    random_trials = random_trial_count(settings.optimization)
    context.log(f"search: {target} trials, the first {random_trials} random, then {target - random_trials} guided "
                f"by {SAMPLER} (seed {settings.optimization.seed})")

    with context.phase("load", None, f"loading {settings.model.model}") as _:
        def build_report(stage: str, completed: int, total: int) -> None:
            context.progress(f"load: {stage}", completed, total)

        loaded = load_model(settings.model, build_report, context.log)
        timings["load"] = loaded.seconds
        context.log(f"loaded {loaded.location} as {loaded.dtype} on {loaded.device} in {loaded.seconds:.1f}s")
    context.check_cancelled()

    with context.phase("prompts", None, "loading prompt sets"):
        records = load_all_prompt_records(settings)
        check_prompt_lengths(loaded.tokenizer, loaded.model.config, settings, records)
        prompts = {name: [record.text for record in items] for name, items in records.items()}
        for name, items in prompts.items():
            context.log(f"{name}: {len(items)} prompts")

    thinking = plan_thinking(loaded.tokenizer, settings.abliteration, settings.model.model)
    context.log(thinking.describe())
    system = settings.prompts.system_prompt
    harmful_eval = format_chat(loaded.tokenizer, system, prompts["bad_eval_prompts"], thinking.style)
    harmless_eval = format_chat(loaded.tokenizer, system, prompts["good_eval_prompts"], thinking.style)

    with context.phase("batch_size", None, "finding the fastest batch size"):
        batch_size = state.get("batch_size") or choose_batch_size(loaded, harmful_eval, settings.model, context.log)
        context.log(f"batch size {batch_size}")

    worker = worker_name()
    shared = None
    if location.url is not None:
        shared = open_study(run_path, settings.optimization, context.warn, location, worker)
        context.log(f"worker {worker} on {location.describe()}")
    started = time.perf_counter()
    if shared is None:
        directions, computed = _prepare_directions(context, loaded, prompts, batch_size, thinking.style)
    else:
        directions, computed = share_directions(
            shared, direction_fingerprint(settings), run_path / DIRECTIONS_FILE,
            lambda: _prepare_directions(context, loaded, prompts, batch_size, thinking.style), context.log,
        )
    timings["residuals"] = time.perf_counter() - started if computed else state.get("residuals_seconds", 0.0)

    with context.phase("baseline", len(harmful_eval), "the unmodified model's refusals and first-token distribution"):
        scorer = make_scorer(settings, loaded, batch_size, context.log)
        evaluator = Evaluator(loaded, harmless_eval, harmful_eval, batch_size, settings.abliteration, thinking,
                              scorer, prompts["bad_eval_prompts"])
        baseline_started = time.perf_counter()
        baseline_refusals = evaluator.count(judge_responses(
            context, "baseline", evaluator, BASELINE, evaluator.generate(context.check_cancelled)))
        timings["baseline_generation"] = time.perf_counter() - baseline_started
    context.emit(BaselineMeasured(refusals=baseline_refusals, total=len(harmful_eval)))
    state.update(batch_size=batch_size, residuals_seconds=timings["residuals"], baseline_refusals=baseline_refusals)
    write_json_atomically(state_path, state)

    quantized = has_quantized_layers(loaded.model)
    if directions.diagnostics:
        context.emit(Metrics(name="direction separation (held out)", values=summarize_diagnostics(
            directions.diagnostics)))
    abliterator = None if quantized else Abliterator(loaded.model, directions)
    if quantized:
        context.log("the model is quantized: trials are applied through hooks and its weights are never touched")
    batched = None
    trial_batch = 1
    if settings.abliteration.apply == "hooks":
        batched = BatchedEvaluator(evaluator, ActivationAblation(loaded.model, directions))
        trial_batch = choose_trial_batch(settings.abliteration.trial_batch, batched,
                                         sample_trial(text_config(loaded.model).num_hidden_layers,
                                                      settings.abliteration), context.log)
    study = shared if shared is not None else open_study(run_path, settings.optimization, context.warn)
    stale = fail_stale_trials(study) if shared is None else []
    if settings.optimization.capability_objective != has_capability_objective(study):
        context.warn(f"this study was created {'with' if has_capability_objective(study) else 'without'} the "
                     "capability objective and keeps it; optimization.capability_objective applies to new studies")
    if stale:
        context.warn(f"trials {stale} were in flight when the run stopped; they were marked failed and do not "
                     "count, and the search samples new parameters in their place")
    warm_start = plan_warm_start(settings.optimization, model_types(loaded.model), run_path)
    enqueued = enqueue_warm_start(study, warm_start, directions.shape[0], target)
    context.log(warm_start.describe(enqueued))
    results = [trial_result(trial) for trial in completed_trials(study)]
    capability: dict[str, Any] = {}
    estimates: list[StudyEstimate] = []

    def estimate_time() -> None:
        """Emit what a trial costs and what the study has left, from the latest trials (the first one is the
        calibration); several workers' trials all count, at this worker's pace."""
        ordered = sorted(results, key=lambda item: item.number)
        estimate = estimate_study([item.seconds for item in ordered], target - len(results), trial_batch,
                                  pass_sizes(trial_batch, random_trials, target, len(results)))
        if estimate is not None:
            estimates[:] = [estimate]
            context.emit(estimate)

    def write_report(status: str) -> TrialResult | None:
        evasive_counts = settings.abliteration.evasive_counts_as_refusal
        labelled, counted = apply_labels(run_path, results, evasive_counts)
        baseline_counts = trial_counts(run_path, BASELINE, evasive_counts)
        chosen = choose_trial(labelled, settings.optimization.choice_max_kl)
        timings["per_trial_median"] = statistics.median([item.seconds for item in results]) if results else 0.0
        timings["apply_reset_median"] = (
            statistics.median([item.apply_reset_seconds for item in results]) if results else 0.0
        )
        report = {
            "status": status,
            "model": settings.model.model,
            "model_location": loaded.location,
            "dtype": loaded.dtype,
            "batch_size": batch_size,
            "trial_batch": trial_batch,
            "baseline": {"refusals": baseline_counts.refusals if baseline_counts else baseline_refusals,
                         "total": len(harmful_eval)},
            "trials": [
                {"number": item.number, "refusals": item.refusals, "kl": item.kl, "seconds": item.seconds,
                 "apply_reset_seconds": item.apply_reset_seconds, "params": item.params, "worker": item.worker,
                 **({"capability": item.capability} if item.capability is not None else {}),
                 **trial_entry_counts(counted.get(item.number))}
                for item in labelled
            ],
            "pareto": pareto_front(labelled),
            SCORING_KEY: scoring_section(run_path, evaluator.scorer.name, evasive_counts,
                                         settings.optimization.choice_max_kl, counted),
            "chosen_trial": chosen.number if chosen else None,
            "methods": method_record(settings.abliteration, chosen.params) if chosen else None,
            "direction_separation": directions.diagnostics,
            "timings": timings,
            "prompts": {name: len(items) for name, items in prompts.items()},
            "prompt_sources": resolved_sources(settings),
            "thinking": thinking.report(),
            "capability": capability or None,
            "warm_start": warm_start.report(enqueued),
            **evaluation_entry(run_path),
            "time_estimate": {"seconds_per_trial": estimates[-1].seconds_per_trial,
                              "measured_trials": estimates[-1].measured_trials,
                              "trial_batch": estimates[-1].trial_batch} if estimates else None,
        }
        write_json_atomically(context.run.report_path, report)
        return chosen

    allowed = allowed_refusals(settings.optimization, baseline_refusals)
    if allowed is not None:
        context.log(f"the sampler counts trials with more than {allowed} refusals as infeasible "
                    f"(optimization.feasible_refusal_share = {settings.optimization.feasible_refusal_share})")
    with context.phase("trials", target, "Optuna search over direction and kernel parameters") as progress:
        context.emit(Metrics(name="search", values={"random_trials": random_trials,
                                                    "guided_trials": target - random_trials, "sampler": SAMPLER,
                                                    "trial_batch": trial_batch}))
        progress(len(results))
        estimate_time()
        while len(results) < target:
            try:
                context.check_cancelled()
                if batched is None:
                    assert abliterator is not None, "a quantized model is only searched through hooks"
                    single = run_trial(context, study, abliterator, evaluator, target, worker, allowed)
                    finished_now = [] if single is None else [single]
                else:
                    finished_now = run_trial_batch(context, study, batched, target,
                                                   trials_to_ask(trial_batch, random_trials, target, len(results)),
                                                   worker, allowed)
            except JobCancelled:
                write_report("cancelled")
                raise
            results = [trial_result(item) for item in completed_trials(study)]
            if finished_now:
                estimate_time()
            for finished in finished_now:
                context.emit(TrialFinished(number=finished.number, total=target, refusals=finished.refusals,
                                           refusal_total=len(evaluator.harmful_texts), kl=finished.kl,
                                           seconds=finished.seconds,
                                           apply_reset_seconds=finished.apply_reset_seconds,
                                           params=finished.params, pareto=pareto_front(results)))
                if finished.capability is not None:
                    context.emit(TrialCapability(number=finished.number, capability=finished.capability,
                                                 questions=settings.optimization.capability_objective_questions))
                print(f"trial {finished.number}: refusals {finished.refusals}/{len(evaluator.harmful_texts)} "
                      f"kl {finished.kl:.4f} ({finished.seconds:.2f}s)", flush=True)
            progress(len(results))

    chosen = write_report("finished")
    if chosen is not None and settings.abliteration.capability_questions:
        capability.update(check_chosen_trial(context, loaded, abliterator,
                                             batched.ablation if batched is not None else None, chosen.number,
                                             chosen.params, batch_size, settings.abliteration.capability_questions))
        chosen = write_report("finished")
    summary: dict[str, Any] = {
        "baseline_refusals": baseline_refusals,
        "total": len(harmful_eval),
        "chosen_trial": chosen.number if chosen else None,
        "refusals": chosen.refusals if chosen else None,
        "kl": chosen.kl if chosen else None,
        "trials": len(results),
    }
    if chosen is not None and context.arguments.get("export_chosen") and abliterator is None:
        from heretic_tui.core.shipping.export import export_streamed_trial

        output = run_path / "model"
        with context.phase("export", None, f"exporting trial {chosen.number} from the full-precision checkpoint"):
            export_streamed_trial(context, context.run, study, chosen.number, output)
        summary["export"] = str(output)
    elif chosen is not None and context.arguments.get("export_chosen"):
        from heretic_tui.core.shipping.export import export_loaded_trial

        del evaluator
        output = run_path / "model"
        with context.phase("export", None, f"exporting trial {chosen.number}"):
            export_loaded_trial(context, loaded, abliterator, study, chosen.number, output, adapter=False)
        summary["export"] = str(output)
    return summary

