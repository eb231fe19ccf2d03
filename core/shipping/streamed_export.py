"""A trial applied to a model's full-precision checkpoint one safetensors shard at a time.

A run searched on a 4-bit or 8-bit model (through activation hooks) has no full-precision weights in memory to
edit, and a large model's full-precision weights may not fit in host memory at all. The merged export therefore
reads the original checkpoint shard by shard (``safetensors.safe_open``), ablates the residual-writing weights of
each shard exactly as :class:`~heretic_tui.core.abliteration.ablation.Abliterator` would (the same components,
strengths, directions and method, in float32, rounded back to the stored dtype), and writes the shard before the
next one is read, so peak host memory stays about one shard.

Which tensors are residual-writing weights is decided on the model's skeleton, built on the meta device from its
config (no weights loaded), by the weight path's own component search. Every component must match a checkpoint
tensor of its name and shape, or fused experts one 2-D tensor per expert as transformers saves them (the
ablation of one expert's matrix is exactly that expert's slice of the fused edit, MPOA's per-row factors included),
before anything is written; a checkpoint stored another way (renamed layers) is refused with the fix (export from
a full-precision load), never exported half edited.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from heretic_tui.core.abliteration.ablation import Abliterator, Component, TrialParameters, ablate
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.loading import resolve_model_location
from heretic_tui.core.settings import ModelSettings

INDEX_FILE = "model.safetensors.index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
"""Files that hold weights: never copied as they are (only the edited safetensors shards are written)."""


def checkpoint_shards(source: Path) -> list[Path]:
    """The checkpoint's safetensors shards, in the index's order when there is one."""
    index = source / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
        return [source / name for name in names]
    shards = sorted(source.glob("*.safetensors"))
    if not shards:
        raise UserInputError(
            f"{source} holds no safetensors weights, so its trial cannot be exported shard by shard. Convert the "
            "checkpoint to safetensors (transformers' save_pretrained does), or export from a full-precision load."
        )
    return shards


def checkpoint_names(component: Component, shapes: dict[str, tuple[int, ...]]) -> dict[str, int] | None:
    """The checkpoint tensors holding a component, each with its output axis: the tensor of the same name and
    shape, or for fused experts ``[experts, ...]`` one 2-D tensor per expert (``experts.{e}.down_proj.weight``, as
    transformers saves them). None when the checkpoint stores it some other way."""
    shape = tuple(component.parameter.shape)
    if shapes.get(component.name) == shape:
        return {component.name: component.output_axis}
    if component.parameter.dim() != 3:
        return None
    parent, _, owner = component.name.rpartition(".")
    names = {f"{parent}.{expert}.{owner}.weight": component.output_axis - 1 for expert in range(shape[0])}
    if all(shapes.get(name) == shape[1:] for name in names):
        return names
    return None


def full_precision_checkpoint(settings: ModelSettings) -> Path:
    """The folder of the model's original (full-precision) checkpoint: the local folder, or a hub model's files in
    the local cache, where loading it for the run put them."""
    location = resolve_model_location(settings.model)
    if Path(location).is_dir():
        return Path(location)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(location, revision=settings.revision or None, local_files_only=True))
    except Exception as error:  # huggingface_hub raises several kinds for a cache miss
        raise UserInputError(
            f"The files of {location} are not in the local Hugging Face cache ({type(error).__name__}), so the "
            "trial cannot be applied to its full-precision checkpoint. Download the model first (heretic-tui "
            "download, or any load of it with network), then export again."
        ) from None


def checkpoint_dtype(source: Path) -> str:
    """The dtype the checkpoint's config records (what the exported weights are stored as)."""
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    return str(text.get("dtype") or text.get("torch_dtype") or config.get("dtype") or config.get("torch_dtype")
               or "float32")


def skeleton(source: Path) -> Any:
    """The model built from its config on the meta device: module names and shapes, no memory for weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(source))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def stream_trial_export(source: Path, destination: Path, parameters: TrialParameters, directions: Any,
                        progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Write ``source``'s checkpoint into ``destination`` (an empty folder) with the trial applied; returns the
    names of the edited tensors. ``directions`` as the abliteration run holds them."""
    source, destination = Path(source), Path(destination)
    weight_path = Abliterator(skeleton(source), directions)
    per_layer = weight_path.trial_directions(parameters)
    shards = checkpoint_shards(source)
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as opened:
            shapes.update({name: tuple(opened.get_slice(name).get_shape()) for name in opened.keys()})
    edits: dict[str, tuple[Component, float, int]] = {}
    for component, strength in weight_path.weights(parameters):
        matched = checkpoint_names(component, shapes)
        if matched is None:
            raise UserInputError(
                f"The checkpoint in {source} does not store {component.name} under that name or one tensor per "
                "expert, so this trial cannot be applied to it shard by shard. Export from a full-precision load "
                "instead: set model.quantization = 'none' for the export."
            )
        edits.update({name: (component, strength, axis) for name, axis in matched.items()})
    edited: list[str] = []
    for done, shard in enumerate(shards):
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(shard), framework="pt") as opened:
            metadata = opened.metadata() or {}
            for name in opened.keys():
                tensor = opened.get_tensor(name)
                if name in edits:
                    component, strength, axis = edits[name]
                    direction = per_layer[component.layer].float()
                    tensor = ablate(tensor.float(), direction, strength, axis,
                                    parameters.ablation_method).to(tensor.dtype)
                    edited.append(name)
                tensors[name] = tensor.contiguous()
        save_file(tensors, str(destination / shard.name), metadata={**metadata, "format": "pt"})
        del tensors
        if progress is not None:
            progress(done + 1, len(shards))
    for item in source.iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES):
            shutil.copy2(item, destination / item.name)
    return edited
