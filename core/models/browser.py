"""Finding the models already on this machine and describing them without loading a single weight.

A GPU box collects models in three places: the Hugging Face cache, folders the user keeps models in
(``output.model_directories``) and the outputs of earlier runs (merged exports, LoRA adapters of a trial or a
fine-tune). The browser lists all of them with what a person needs to pick one (architecture, parameter count,
dtype, size, whether it has a chat template; for an adapter, the base model it goes on). Parameter counts and
dtypes come from the safetensors headers (``safetensors.safe_open`` reads only the header of each shard), never
from loading tensors, so a scan of a cache holding hundreds of gigabytes stays a matter of milliseconds per model.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from heretic_tui.core.atomic_files import read_json_object
from heretic_tui.core.runs.run_directory import list_runs, runs_root
from heretic_tui.core.settings import Settings

SOURCE_HUB_CACHE = "hf cache"
SOURCE_FOLDER = "folder"
SOURCE_RUN = "run output"
SOURCE_DEMO = "built-in"
ADAPTER_CONFIG = "adapter_config.json"
TRAINER_CHECKPOINT_PREFIX = "checkpoint-"
"""Trainer checkpoints (``checkpoint-120``) hold an adapter too, but they are a run's resume points, not outputs;
hidden folders are half-written exports (``.partial-PID``)."""

SAFETENSORS_DTYPES: dict[str, str] = {
    "BF16": "bfloat16",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3",
    "F8_E5M2": "float8_e5m2",
    "I8": "int8",
    "U8": "uint8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "BOOL": "bool",
}
RUN_OUTPUT_DEPTH = 3
MODEL_DIRECTORY_DEPTH = 2


@dataclass(frozen=True)
class ModelInfo:
    """One local model folder and what can be learned about it from its metadata files."""

    name: str
    path: Path
    source: str
    architecture: str | None
    model_type: str | None
    parameter_count: int | None
    dtype: str | None
    size_bytes: int
    has_chat_template: bool
    modified: float
    has_weights: bool
    quantization: str | None = None
    base_model: str | None = None
    """For a LoRA (or other PEFT) adapter: the model it is loaded on top of, as its adapter_config.json names it."""

    @property
    def is_adapter(self) -> bool:
        return self.base_model is not None


def is_model_folder(path: Path) -> bool:
    """A Hugging Face model folder is recognised by its config.json, the same rule the loader uses."""
    return (path / "config.json").is_file()


def is_adapter_folder(path: Path) -> bool:
    """A PEFT adapter folder (what a LoRA export or a fine-tune writes) has adapter_config.json instead."""
    return (path / ADAPTER_CONFIG).is_file() and not is_model_folder(path)


def is_listed_folder(path: Path) -> bool:
    return is_model_folder(path) or is_adapter_folder(path)


def hub_cache_directory() -> Path:
    """The hub cache as the environment says now (huggingface_hub reads it only once, at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def count_parameters(folder: Path) -> tuple[int | None, str | None]:
    """Parameter count and the dominant dtype, read from the safetensors headers of the folder's shards."""
    files = _weight_files(folder)
    if not files:
        return None, None
    total = 0
    by_dtype: Counter[str] = Counter()
    try:
        for file in files:
            with safe_open(str(file), framework="numpy") as shard:
                for name in shard.keys():
                    tensor = shard.get_slice(name)
                    count = math.prod(tensor.get_shape())
                    total += count
                    by_dtype[tensor.get_dtype()] += count
    except (OSError, SafetensorError):
        return None, None
    if not by_dtype:
        return 0, None
    dominant = by_dtype.most_common(1)[0][0]
    return total, SAFETENSORS_DTYPES.get(dominant, dominant.lower())


def has_chat_template(folder: Path) -> bool:
    """Whether the tokenizer files carry a chat template (inline, or in the newer separate template files)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    return bool(read_json_object(folder / "tokenizer_config.json").get("chat_template"))


def folder_size_and_modified(folder: Path) -> tuple[int, float]:
    """Bytes on disk (following the cache's symlinks to their blobs) and the newest modification time."""
    size = 0
    modified = 0.0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                status = os.stat(os.path.join(root, name))
            except OSError:
                continue
            size += status.st_size
            modified = max(modified, status.st_mtime)
    return size, modified


def describe_model(folder: Path, name: str | None = None, source: str = SOURCE_FOLDER) -> ModelInfo:
    """Everything the browser shows about one model or adapter folder; missing metadata becomes None, never an
    error."""
    folder = Path(folder)
    if is_adapter_folder(folder):
        return describe_adapter(folder, name, source)
    config = read_json_object(folder / "config.json")
    architectures = config.get("architectures") or []
    parameters, dtype = count_parameters(folder)
    if dtype is None:
        dtype = config.get("torch_dtype") or config.get("dtype")
    quantization = config.get("quantization_config")
    quantization_name = str(quantization.get("quant_method", "quantized")) if isinstance(quantization, dict) else None
    size, modified = folder_size_and_modified(folder)
    has_weights = bool(_weight_files(folder)) or any(folder.glob("*.bin")) or any(folder.glob("*.gguf"))
    return ModelInfo(
        name=name or folder.name,
        path=folder,
        source=source,
        architecture=str(architectures[0]) if architectures else None,
        model_type=config.get("model_type"),
        parameter_count=parameters,
        dtype=str(dtype) if dtype else None,
        size_bytes=size,
        has_chat_template=has_chat_template(folder),
        modified=modified,
        has_weights=has_weights,
        quantization=quantization_name,
    )


def describe_adapter(folder: Path, name: str | None = None, source: str = SOURCE_FOLDER) -> ModelInfo:
    """An adapter: its kind (LoRA rank), the base model it belongs to, and its own (small) weights."""
    config = read_json_object(folder / ADAPTER_CONFIG)
    peft_type = str(config.get("peft_type") or "PEFT")
    rank = config.get("r")
    kind = f"{peft_type} adapter" + (f", rank {rank}" if isinstance(rank, int) else "")
    parameters, dtype = count_parameters(folder)
    size, modified = folder_size_and_modified(folder)
    return ModelInfo(
        name=name or folder.name,
        path=folder,
        source=source,
        architecture=kind,
        model_type=str(config["task_type"]) if config.get("task_type") else None,
        parameter_count=parameters,
        dtype=dtype,
        size_bytes=size,
        has_chat_template=has_chat_template(folder),
        modified=modified,
        has_weights=bool(_weight_files(folder)) or any(folder.glob("adapter_model.bin")),
        base_model=str(config.get("base_model_name_or_path") or "?"),
    )


def scan_hub_cache(cache_directory: Path | None = None) -> list[ModelInfo]:
    """Models in the Hugging Face cache, one per repository (the revision ``main`` points at, else the newest)."""
    from huggingface_hub import scan_cache_dir

    directory = cache_directory or hub_cache_directory()
    if not directory.is_dir():
        return []
    try:
        cache = scan_cache_dir(directory)
    except Exception:
        return []
    models: list[ModelInfo] = []
    for repository in cache.repos:
        if repository.repo_type != "model" or not repository.revisions:
            continue
        revisions = sorted(repository.revisions, key=lambda revision: revision.last_modified, reverse=True)
        chosen = next((revision for revision in revisions if "main" in revision.refs), revisions[0])
        if is_listed_folder(chosen.snapshot_path):
            models.append(describe_model(chosen.snapshot_path, repository.repo_id, SOURCE_HUB_CACHE))
    return models


def _model_folders(root: Path, depth: int) -> Iterable[Path]:
    """Model and adapter folders at or below root, not descending into one (its subfolders are its own parts)."""
    if not root.is_dir():
        return
    if is_listed_folder(root):
        yield root
        return
    if depth <= 0:
        return
    try:
        children = sorted(child for child in root.iterdir()
                          if child.is_dir() and not child.name.startswith((".", TRAINER_CHECKPOINT_PREFIX)))
    except OSError:
        return
    for child in children:
        yield from _model_folders(child, depth - 1)


def scan_model_directories(directories: Iterable[str | Path]) -> list[ModelInfo]:
    models: list[ModelInfo] = []
    for directory in directories:
        root = Path(directory).expanduser()
        for folder in _model_folders(root, MODEL_DIRECTORY_DEPTH):
            models.append(describe_model(folder, str(folder.relative_to(root.parent)), SOURCE_FOLDER))
    return models


def scan_run_outputs(root: Path) -> list[ModelInfo]:
    """Models and adapters written by earlier runs, named ``<run>/<folder>`` so they can be told apart."""
    models: list[ModelInfo] = []
    for run in list_runs(root):
        for folder in _model_folders(run.path, RUN_OUTPUT_DEPTH):
            models.append(describe_model(folder, str(folder.relative_to(run.path.parent)), SOURCE_RUN))
    return models


def scan_demo_model() -> list[ModelInfo]:
    """The built-in demo model, once it has been built (it is built on first use, not by the browser)."""
    from heretic_tui.core.models.demo import DEMO_MODEL_NAME, demo_model_path, is_demo_model_built

    path = demo_model_path()
    if not is_demo_model_built(path):
        return []
    return [describe_model(path, DEMO_MODEL_NAME, SOURCE_DEMO)]


def model_setting_for(model: ModelInfo) -> str:
    """The value of ``model.model`` that loads this model: the demo's name, a hub id, or the folder."""
    if model.source == SOURCE_DEMO:
        return model.name
    return str(model.path)


def find_models(settings: Settings) -> list[ModelInfo]:
    """Every local model the browser lists, newest first; a folder found twice is listed once."""
    found = (
        scan_demo_model()
        + scan_hub_cache()
        + scan_model_directories(settings.output.model_directories)
        + scan_run_outputs(runs_root(settings))
    )
    unique: dict[Path, ModelInfo] = {}
    for model in found:
        unique.setdefault(model.path.resolve(), model)
    return sorted(unique.values(), key=lambda model: model.modified, reverse=True)
