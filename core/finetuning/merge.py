"""Writing the results: the adapter folder, and the merged full model with its tokenizer and chat template.

Both are written into a hidden sibling folder that is renamed into place only when complete (as exports are), so a
killed run never leaves a folder that looks like a usable model. The merge reloads the base model from disk in full
precision instead of merging into the model that was trained: a QLoRA base is 4-bit and merging into it would
round the adapter away, and reloading also proves the adapter on disk is the one that works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.atomic_files import write_folder_atomically
from heretic_tui.core.models.loading import DTYPES
from heretic_tui.core.settings import ModelSettings
from heretic_tui.core.shipping.metadata import METHOD_FINE_TUNE, created_now, library_versions, write_metadata


def metadata(kind: str, source_model: str, location: str, extra: dict[str, Any]) -> dict[str, Any]:
    """heretic.json of a fine-tuned output, in the same spirit as an abliteration export's."""
    return {
        "method": METHOD_FINE_TUNE,
        "format": kind,
        "source_model": source_model,
        "source_location": location,
        "created": created_now(),
        "versions": library_versions(extra=("trl", "datasets")),
        **extra,
    }


def full_precision_dtype(trained_dtype: str) -> torch.dtype:
    """The dtype to merge in: the training dtype, except that a 4-bit base is merged in bfloat16."""
    return DTYPES.get(trained_dtype, torch.bfloat16)


def load_base_model(location: str, settings: ModelSettings, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM

    device_map = "cpu" if not torch.cuda.is_available() else (settings.device_map or "auto")
    return AutoModelForCausalLM.from_pretrained(
        location, dtype=dtype, device_map=device_map, revision=settings.revision or None,
        trust_remote_code=settings.trust_remote_code,
    )


def load_adapter_model(location: str, settings: ModelSettings, adapter_dir: Path, dtype: torch.dtype) -> Any:
    """The base model from disk with the saved adapter on top (not merged)."""
    from peft import PeftModel

    base = load_base_model(location, settings, dtype)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def load_original_tokenizer(location: str, settings: ModelSettings) -> Any:
    """The model's tokenizer as shipped (right padding, its own config), with a replacement template if one is set."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location, revision=settings.revision or None,
                                              trust_remote_code=settings.trust_remote_code)
    if settings.chat_template:
        tokenizer.chat_template = Path(settings.chat_template).expanduser().read_text(encoding="utf-8")
    return tokenizer


def merge_adapter(location: str, settings: ModelSettings, adapter_dir: Path, output: Path, dtype: torch.dtype,
                  shard_size: str, extra_metadata: dict[str, Any]) -> Path:
    """Write base + adapter merged into ``output`` as an ordinary model folder with tokenizer and chat template."""
    model = load_adapter_model(location, settings, adapter_dir, dtype).merge_and_unload()
    tokenizer = load_original_tokenizer(location, settings)

    def write(folder: Path) -> None:
        model.save_pretrained(str(folder), max_shard_size=shard_size)
        tokenizer.save_pretrained(str(folder))
        write_metadata(folder, metadata("merged", settings.model, location, extra_metadata))

    try:
        write_folder_atomically(output, write)
        return output.expanduser().resolve()
    finally:
        del model


def save_adapter(model: Any, location: str, settings: ModelSettings, output: Path,
                 extra_metadata: dict[str, Any]) -> Path:
    """Write the trained adapter with the model's own tokenizer (and chat template) and heretic.json."""
    tokenizer = load_original_tokenizer(location, settings)

    def write(folder: Path) -> None:
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        write_metadata(folder, metadata("adapter", settings.model, location, extra_metadata))

    write_folder_atomically(output, write)
    return output.expanduser().resolve()
