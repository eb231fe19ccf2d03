"""Exporting a trial of an abliteration run as an ordinary Hugging Face model folder (merged) or a LoRA adapter.

Everything is written into a hidden sibling folder that is renamed into place only when complete
(:func:`heretic_tui.core.atomic_files.write_folder_atomically`), so a failed or killed export never leaves a folder
that looks like a model, and the model-sized leftover of an export killed at its rename is removed by the next
export into the same place. A full disk or a read-only folder is one StorageError paragraph (exit 3); an output
that is a file, or under one, is refused before the model is loaded (exit 2). The run's study is only read (its
journal is never appended to by an export).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import optuna

from heretic_tui.core.abliteration.ablation import Abliterator, TrialParameters, rank_one_factors
from heretic_tui.core.abliteration.direction_set import DirectionSet
from heretic_tui.core.abliteration.methods import PROJECTION, method_record
from heretic_tui.core.atomic_files import describe_storage_error, write_folder_atomically
from heretic_tui.core.capability.harness_records import evaluation_entry
from heretic_tui.core.errors import StorageError, UserInputError
from heretic_tui.core.runs.events import ArtifactWritten
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.lifecycle import start_job
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.models.loading import LoadedModel, load_model
from heretic_tui.core.shipping.metadata import (
    FORMAT_ADAPTER,
    FORMAT_MERGED,
    METADATA_FILE,  # noqa: F401 (where callers have always found the file name)
    METHOD_ABLITERATION,
    created_now,
    library_versions,
    write_metadata,
)
from heretic_tui.core.shipping.model_card import copy_processor_files, write_model_card
from heretic_tui.core.shipping.streamed_export import checkpoint_dtype, full_precision_checkpoint, stream_trial_export
from heretic_tui.core.abliteration.study import find_trial, read_study, trial_result
from heretic_tui.core.runs.registry import ROLE_ABLITERATED, record_produced_model
from heretic_tui.core.settings import Settings, load_settings
from heretic_tui.core.runs.worker import JobContext

def run_settings(run: RunDirectory) -> Settings:
    return load_settings(run.config_path, environ={}, search_default_paths=False)


def open_abliteration_run(run_dir: str | Path) -> RunDirectory:
    run = RunDirectory.open(run_dir)
    kind = run.read_job().get("kind")
    if kind != "abliterate":
        raise UserInputError(f"{run.path} is a '{kind}' run; only abliteration runs have trials to export.")
    return run


def check_output(output: Path) -> None:
    """The export folder must be a new or empty folder whose parents are folders; else one sentence, exit 2.

    Checked before the model is loaded, so a typo costs nothing; a parent that cannot be written (a read-only
    disk) is a StorageError (exit 3) for the same reason.
    """
    output = Path(output).expanduser().absolute()
    if output.exists() and not output.is_dir():
        raise UserInputError(
            f"The export folder {output} is a file. Choose a path for a new folder with --output (the export writes "
            "a whole model folder there)."
        )
    for parent in output.parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise UserInputError(
                f"The export folder {output} cannot be created: {parent} is a file, not a folder. Choose an --output "
                "path that does not pass through a file."
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            number = errno.EROFS if os.statvfs(parent).f_flag & os.ST_RDONLY else errno.EACCES
            raise StorageError(describe_storage_error(OSError(number, os.strerror(number)), output,
                                                      "create the export folder"))
        break
    if output.is_dir() and any(output.iterdir()):
        raise UserInputError(
            f"The export folder {output} already exists and is not empty. Choose a new --output folder or remove it."
        )


def _directions(run: RunDirectory) -> DirectionSet:
    path = run.path / "directions.safetensors"
    if not path.exists():
        raise UserInputError(f"{run.path} has no refusal directions yet (the run stopped before computing them).")
    return DirectionSet.read(path)[0]


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
    entry = next((item for item in report.get("trials", []) if isinstance(item, dict)
                  and item.get("number") == frozen.number), {})
    scoring = report.get("scoring") if isinstance(report.get("scoring"), dict) else {}
    capability = report.get("capability") if isinstance(report.get("capability"), dict) else {}
    return {
        "method": METHOD_ABLITERATION,
        "format": FORMAT_ADAPTER if adapter else FORMAT_MERGED,
        "source_model": settings.model.model,
        "source_location": loaded.location,
        "source_revision": settings.model.revision or None,
        "run_dir": str(run.path),
        "trial": frozen.number,
        "parameters": result.params,
        "methods": method_record(settings.abliteration, result.params),
        "metrics": {
            "refusals": entry.get("refusals", result.refusals),
            "refusal_total": report.get("baseline", {}).get("total"),
            "baseline_refusals": report.get("baseline", {}).get("refusals"),
            "kl_divergence": result.kl,
            "refusal_scorer": scoring.get("scorer", "markers"),
            "scorer_refusals": entry.get("scorer_refusals", result.refusals),
            "human_labels": entry.get("human_labels", 0),
        },
        "capability": capability if capability.get("trial_number") == frozen.number else None,
        **evaluation_entry(run.path, frozen.number),
        "system_prompt": settings.prompts.system_prompt,
        "prompt_sources": report.get("prompt_sources"),
        "dtype": loaded.dtype,
        "created": created_now(),
        "versions": library_versions(),
    }


def check_adapter_possible(parameters: TrialParameters) -> None:
    """A rank-1 adapter reproduces only a plain projection; anything else is refused before any work, exit 2."""
    if parameters.ablation_method != PROJECTION:
        raise UserInputError(
            f"Adapter export supports only the '{PROJECTION}' ablation method; this trial used "
            f"'{parameters.ablation_method}', whose edit rescales whole rows and is not a rank-1 adapter. Export the "
            "merged model instead (leave out --adapter)."
        )


def _save_adapter(loaded: LoadedModel, abliterator: Abliterator, parameters: TrialParameters, folder: Path) -> None:
    """A rank-1 LoRA adapter per touched matrix whose product B A equals that matrix's ablation."""
    import torch
    from peft import LoraConfig, get_peft_model

    check_adapter_possible(parameters)
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
    per_layer = abliterator.trial_directions(parameters)
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
    metadata = _metadata(settings, loaded, run, frozen, adapter)

    def write(folder: Path) -> None:
        if adapter:
            abliterator.reset()
            _save_adapter(loaded, abliterator, parameters, folder)
        else:
            abliterator.apply(parameters)
            try:
                loaded.model.save_pretrained(str(folder), max_shard_size=settings.output.shard_size)
            finally:
                abliterator.reset()
        loaded.tokenizer.save_pretrained(str(folder))
        write_metadata(folder, metadata)
        copy_processor_files(loaded.location, folder, settings.model.revision)
        write_model_card(folder, metadata, run.config_path.read_text(encoding="utf-8"), name=output.name)

    write_folder_atomically(output, write, replace=False)
    record_produced_model(output, metadata, role=ROLE_ABLITERATED, warn=context.warn if context else None)
    if context is not None:
        context.emit(ArtifactWritten(name="export", path=str(output)))
        context.log(f"exported trial {trial} to {output}")
    return output


def export_streamed_trial(context: JobContext | None, run: RunDirectory, study: optuna.Study, trial: int,
                          output: Path) -> Path:
    """The merged export of a run whose model was loaded quantized: the trial applied to the full-precision
    checkpoint one shard at a time (:mod:`~heretic_tui.core.shipping.streamed_export`), with the metadata,
    processor files and model card of :func:`export_loaded_trial`."""
    settings = run_settings(run)
    output = Path(output).expanduser().resolve()
    check_output(output)
    frozen = find_trial(study, trial)
    parameters = TrialParameters.from_flat(frozen.user_attrs["parameters"])
    source = full_precision_checkpoint(settings.model)
    stored = LoadedModel(model=None, tokenizer=None, location=str(source), dtype=checkpoint_dtype(source), seconds=0.0)
    metadata = _metadata(settings, stored, run, frozen, adapter=False)

    def write(folder: Path) -> None:
        stream_trial_export(source, folder, parameters, _directions(run),
                            lambda done, total: context.progress("export: shards", done, total) if context else None)
        write_metadata(folder, metadata)
        copy_processor_files(str(source), folder, settings.model.revision)
        write_model_card(folder, metadata, run.config_path.read_text(encoding="utf-8"), name=output.name)

    write_folder_atomically(output, write, replace=False)
    record_produced_model(output, metadata, role=ROLE_ABLITERATED, warn=context.warn if context else None)
    if context is not None:
        context.emit(ArtifactWritten(name="export", path=str(output)))
        context.log(f"exported trial {trial} to {output} from the full-precision checkpoint, shard by shard")
    return output


def run_export_job(context: JobContext) -> dict[str, Any]:
    """Worker entry for kind 'export': arguments source_run, trial, output, adapter."""
    arguments = context.arguments
    run = open_abliteration_run(arguments["source_run"])
    settings = run_settings(run)
    study = read_study(run.path)
    find_trial(study, int(arguments["trial"]))
    if settings.model.quantization != "none" and not arguments.get("adapter"):
        with context.phase("export", None, f"writing trial {arguments['trial']} from the full-precision checkpoint"):
            path = export_streamed_trial(context, run, study, int(arguments["trial"]), Path(arguments["output"]))
        return {"output": str(path), "trial": int(arguments["trial"]), "adapter": False}
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
    frozen = find_trial(study, trial)
    if adapter:
        check_adapter_possible(TrialParameters.from_flat(frozen.user_attrs["parameters"]))
    output_path = Path(output).expanduser().resolve()
    check_output(output_path)
    job_run = RunDirectory.create(run.path / "jobs", f"export-trial-{trial}")
    return start_job("export", settings, job_run,
                     {"source_run": str(run.path), "trial": trial, "output": str(output_path), "adapter": adapter})
