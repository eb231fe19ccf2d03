"""Where a causal language model keeps its decoder layers, found the same way for every architecture.

Residual capture (core/models/residuals.py) and ablation (core/abliteration/ablation.py) both walk these layers;
finding them in one place keeps the two in step on which module is "layer i".
"""

from __future__ import annotations

from typing import Any

from torch import nn

from heretic_tui.core.errors import UserInputError

LAYER_LIST_NAMES = ("layers", "h", "blocks", "layer")


class UnsupportedLayoutError(UserInputError):
    """The model has a layout heretic-tui does not know how to read or edit; never skipped silently."""


def text_config(model: Any) -> Any:
    """The language model's own config (multimodal models nest it under ``text_config``)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def decoder_layers(model: Any) -> tuple[str, nn.ModuleList]:
    """The ModuleList of decoder layers (the first one whose length is the configured layer count)."""
    count = text_config(model).num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count and name.split(".")[-1] in LAYER_LIST_NAMES:
            return name, module
    raise UnsupportedLayoutError(
        f"Could not find the {count} decoder layers of {type(model).__name__} (looked for a ModuleList named "
        f"{'/'.join(LAYER_LIST_NAMES)}). This architecture is not supported yet."
    )
