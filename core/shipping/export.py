"""Exporting a trial of an abliteration run as an ordinary Hugging Face model folder (merged) or a LoRA adapter.

Everything is written into a temporary sibling folder that is renamed into place only when complete, so a failed
or killed export never leaves a folder that looks like a model.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import optuna

from heretic_tui.core.abliteration.ablation import Abliterator, TrialParameters, rank_one_factors
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import ArtifactWritten
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import start_job
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.models.loading import LoadedModel, load_model
from heretic_tui.core.shipping.model_card import copy_processor_files, write_model_card
from heretic_tui.core.abliteration.study import find_trial, read_study, trial_result
from heretic_tui.core.runs.registry import ROLE_ABLITERATED, record_produced_model
from heretic_tui.core.settings import Settings, load_settings
from heretic_tui.core.runs.worker import JobContext

METADATA_FILE = "heretic.json"
LIBRARIES = ("heretic-tui", "torch", "transformers", "peft", "optuna", "safetensors", "tokenizers")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_settings(run: RunDirectory) -> Settings:
    return load_settings(run.config_path, environ={}, search_default_paths=False)


def open_abliteration_run(run_dir: str | Path) -> RunDirectory:
    run = RunDirectory.open(run_dir)
    kind = run.read_job().get("kind")
    if kind != "abliterate":
        raise UserInputError(f"{run.path} is a '{kind}' run; only abliteration runs have trials to export.")
    return run


def check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserInputError(
            f"The export folder {output} already exists and is not empty. Choose a new --output folder or remove it."
        )


def _directions(run: RunDirectory) -> Any:
    from safetensors.torch import load_file

    path = run.path / "directions.safetensors"
    if not path.exists():
        raise UserInputError(f"{run.path} has no refusal directions yet (the run stopped before computing them).")
    return load_file(str(path))["directions"]


def load_trial_model(run_dir: str | Path, trial: int) -> tuple[Any, Any]:
    """The run's model with the given trial applied, in this process (for chat and comparisons)."""
    run = open_abliteration_run(run_dir)
    settings = run_settings(run)
    study = read_study(run.path)
    frozen = find_trial(study, trial)
    loaded = load_model(settings.model)
    abliterator = Abliterator(loaded.model, _directions(run))
    abliterator.apply(TrialParameters.from_flat(frozen.user_attrs["parameters"]))
    return loaded.model, loaded.tokenizer


def _metadata(settings: Settings, loaded: LoadedModel, run: RunDirectory, frozen: optuna.trial.FrozenTrial,
              adapter: bool) -> dict[str, Any]:
    result = trial_result(frozen)
    report = run.read_report() or {}
    return {
        "method": "abliteration",
        "format": "adapter" if adapter else "merged",
        "source_model": settings.model.model,
        "source_location": loaded.location,
        "source_revision": settings.model.revision or None,
        "run_dir": str(run.path),
        "trial": frozen.number,
        "parameters": result.params,
        "metrics": {
            "refusals": result.refusals,
            "refusal_total": report.get("baseline", {}).get("total"),
            "baseline_refusals": report.get("baseline", {}).get("refusals"),
            "kl_divergence": result.kl,
        },
        "system_prompt": settings.prompts.system_prompt,
        "prompt_sources": report.get("prompt_sources"),
        "dtype": loaded.dtype,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": library_versions(),
    }


def _save_adapter(loaded: LoadedModel, abliterator: Abliterator, parameters: TrialParameters, folder: Path) -> None:
    """A rank-1 LoRA adapter per touched matrix whose product B A equals that matrix's ablation."""
    import torch
    from peft import LoraConfig, get_peft_model

    from heretic_tui.core.abliteration.ablation import layer_directions

    touched = list(abliterator.weights(parameters))
    fused = [component.name for component, _ in touched if component.parameter.dim() != 2]
    if fused:
        raise UserInputError(
            f"Adapter export does not support fused expert tensors ({fused[0]} and {len(fused) - 1} more). "
            "Export the merged model instead (leave out --adapter)."
        )
    modules = [component.name.removesuffix(".weight") for component, _ in touched]
    config = LoraConfig(r=1, lora_alpha=1, lora_dropout=0.0, bias="none", target_modules=modules)
    peft_model = get_peft_model(loaded.model, config)
    per_layer = layer_directions(abliterator.directions, parameters)
    with torch.no_grad():
        for component, strength in touched:
            module = peft_model.base_model.model.get_submodule(component.name.removesuffix(".weight"))
            weight = abliterator._original(component)
            direction = per_layer[component.layer].to(weight.device)
            up, down = rank_one_factors(weight, direction, strength)
            module.lora_B["default"].weight.copy_(up.to(module.lora_B["default"].weight.dtype))
            module.lora_A["default"].weight.copy_(down.to(module.lora_A["default"].weight.dtype))
    peft_model.save_pretrained(str(folder))
    peft_model.unload()


def export_loaded_trial(
    context: JobContext | None,
    loaded: LoadedModel,
    abliterator: Abliterator,
    study: optuna.Study,
    trial: int,
    output: Path,
    adapter: bool,
    run: RunDirectory | None = None,
) -> Path:
    """Write the trial (merged weights or adapter) plus tokenizer, chat template and metadata, atomically."""
    run = run or (context.run if context else None)
    assert run is not None
    settings = run_settings(run)
    output = Path(output).expanduser().resolve()
    check_output(output)
    frozen = find_trial(study, trial)
    parameters = TrialParameters.from_flat(frozen.user_attrs["parameters"])
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.partial-{os.getpid()}")
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    try:
        if adapter:
            abliterator.reset()
            _save_adapter(loaded, abliterator, parameters, temporary)
        else:
            abliterator.apply(parameters)
            loaded.model.save_pretrained(str(temporary), max_shard_size=settings.output.shard_size)
            abliterator.reset()
        loaded.tokenizer.save_pretrained(str(temporary))
        metadata = _metadata(settings, loaded, run, frozen, adapter)
        (temporary / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        copy_processor_files(loaded.location, temporary, settings.model.revision)
        write_model_card(temporary, metadata, run.config_path.read_text(encoding="utf-8"), name=output.name)
        if output.exists():
            output.rmdir()
        os.replace(temporary, output)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    record_produced_model(output, metadata, role=ROLE_ABLITERATED, warn=context.warn if context else None)
    if context is not None:
        context.emit(ArtifactWritten(name="export", path=str(output)))
        context.log(f"exported trial {trial} to {output}")
    return output


def run_export_job(context: JobContext) -> dict[str, Any]:
    """Worker entry for kind 'export': arguments source_run, trial, output, adapter."""
    arguments = context.arguments
    run = open_abliteration_run(arguments["source_run"])
    settings = run_settings(run)
    study = read_study(run.path)
    find_trial(study, int(arguments["trial"]))
    with context.phase("load", None, f"loading {settings.model.model}"):
        loaded = load_model(settings.model, log=context.log)
    with context.phase("export", None, f"writing trial {arguments['trial']}"):
        abliterator = Abliterator(loaded.model, _directions(run))
        path = export_loaded_trial(context, loaded, abliterator, study, int(arguments["trial"]),
                                   Path(arguments["output"]), bool(arguments.get("adapter")), run=run)
    return {"output": str(path), "trial": int(arguments["trial"]), "adapter": bool(arguments.get("adapter"))}


def start_export(run_dir: str | Path, trial: int, output: str | Path, adapter: bool = False) -> JobHandle:
    """Check the request, then export in a worker job kept in ``RUN_DIR/jobs/export-<stamp>``."""
    run = open_abliteration_run(run_dir)
    settings = run_settings(run)
    study = read_study(run.path)
    find_trial(study, trial)
    output_path = Path(output).expanduser().resolve()
    check_output(output_path)
    job_run = RunDirectory.create(run.path / "jobs", f"export-trial-{trial}")
    return start_job("export", settings, job_run,
                     {"source_run": str(run.path), "trial": trial, "output": str(output_path), "adapter": adapter})
