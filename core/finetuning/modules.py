"""What the model offers to train: its linear layers (LoRA targets) and its context length.

Both are checked before a run starts, on a weightless copy of the model built on the meta device, so a typo in
``target_modules`` or a sequence length the model cannot handle is a clear error in a second, not a crash after the
weights have loaded. PEFT itself only complains when *no* target matches; a single wrong name among right ones would
be silently ignored, which is why every name is checked here.
"""

from __future__ import annotations

from typing import Any

import torch

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.loading import context_length
from heretic_tui.core.settings import FinetuneSettings, ModelSettings

DEFAULT_SEQUENCE_LENGTH = 1024
"""Used when max_sequence_length is 0: long enough for most examples, short enough for a laptop."""


def _trainable_layer_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return (torch.nn.Linear, Conv1D)


def linear_layers(model: Any) -> dict[str, Any]:
    """Every linear layer of the model by its full name, without the output head (it is tied to the vocabulary)."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    layer_types = _trainable_layer_types()
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, layer_types) and module is not output
    }


def default_target_modules(model: Any) -> list[str]:
    """The short names of every attention and MLP projection, which is what PEFT's 'all-linear' would pick."""
    return sorted({name.rsplit(".", 1)[-1] for name in linear_layers(model)})


def resolve_target_modules(model: Any, requested: list[str], model_name: str) -> list[str]:
    """The target modules to use: the requested ones if each exists, else the automatic choice."""
    available = default_target_modules(model)
    if not requested:
        if not available:
            raise UserInputError(
                f"The model {model_name} has no linear layers that LoRA can train. Set finetune.target_modules to "
                "the names of its projection layers."
            )
        return available
    names = list(linear_layers(model))
    for target in requested:
        if not any(name == target or name.endswith("." + target) for name in names):
            raise UserInputError(
                f"finetune.target_modules: the model {model_name} has no linear layer named '{target}'. Its linear "
                f"layers are: {', '.join(available)}. Fix the name, or leave target_modules empty to train all of "
                "them."
            )
    return list(requested)


def sequence_length(settings: FinetuneSettings, config: Any, model_name: str) -> int:
    """The training sequence length: the setting if the model can take it, else a clear error; 0 picks one."""
    limit = context_length(config)
    if settings.max_sequence_length == 0:
        return min(limit or DEFAULT_SEQUENCE_LENGTH, DEFAULT_SEQUENCE_LENGTH)
    if limit is not None and settings.max_sequence_length > limit:
        raise UserInputError(
            f"finetune.max_sequence_length is {settings.max_sequence_length}, above the context length of the model "
            f"{model_name} ({limit} tokens, max_position_embeddings in its config.json). Set max_sequence_length to "
            f"{limit} or less (e.g. --set finetune.max_sequence_length={limit}), or to 0 to use the model's own."
        )
    return settings.max_sequence_length


def window_sizes(settings: FinetuneSettings, length: int) -> tuple[int, int]:
    """Document window and overlap in tokens, the window capped so it fits a sequence with BOS and EOS added."""
    window = max(1, min(settings.chunk_tokens, length - 2))
    return window, min(settings.chunk_overlap, window // 2)


def check_chunk_settings(settings: FinetuneSettings) -> None:
    if settings.chunk_overlap >= settings.chunk_tokens:
        raise UserInputError(
            f"finetune.chunk_overlap ({settings.chunk_overlap}) must be smaller than finetune.chunk_tokens "
            f"({settings.chunk_tokens}), or document windows would never advance. Lower chunk_overlap."
        )


def meta_model(location: str, settings: ModelSettings) -> tuple[Any, Any]:
    """The model's config and a weightless copy of the model (meta device): module names without the memory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(
        location, revision=settings.revision or None, trust_remote_code=settings.trust_remote_code
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=settings.trust_remote_code)
    return config, model
