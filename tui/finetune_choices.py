"""The fine-tune wizard's basic choices and the settings each stands for.

The basic form asks for a model, data, a preset and an output folder; the preset sets the three figures that
decide how long and how hard training pushes (epochs, LoRA rank, learning rate). The table lives here so the
wizard, its tests and the equivalent headless flags (``--epochs --lora-rank --learning-rate``) read one mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heretic_tui.core.api import HUB_PREFIX

CUSTOM = "custom"

FINETUNE_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "quick": ("Quick: 1 epoch, rank 8, lr 3e-4 (a first look, minutes on small data)",
              {"finetune.epochs": 1.0, "finetune.lora_rank": 8, "finetune.learning_rate": 3e-4}),
    "balanced": ("Balanced: 3 epochs, rank 16, lr 2e-4 (the defaults)",
                 {"finetune.epochs": 3.0, "finetune.lora_rank": 16, "finetune.learning_rate": 2e-4}),
    "thorough": ("Thorough: 5 epochs, rank 32, lr 1e-4 (more capacity, slower)",
                 {"finetune.epochs": 5.0, "finetune.lora_rank": 32, "finetune.learning_rate": 1e-4}),
}


def preset_flags(preset: str) -> dict[str, str]:
    """The headless flags a preset corresponds to, as ``--set`` text (epochs mode: max_steps is reset to 0)."""
    values = FINETUNE_PRESETS[preset][1]
    return {
        "finetune.epochs": str(values["finetune.epochs"]),
        "finetune.max_steps": "0",
        "finetune.lora_rank": str(values["finetune.lora_rank"]),
        "finetune.learning_rate": str(values["finetune.learning_rate"]),
    }


def preset_of(values: Mapping[str, Any]) -> str:
    """The preset that ``values`` match (epochs mode only), or ``custom`` when set one by one."""
    if values["finetune.max_steps"]:
        return CUSTOM
    for preset, (_, assignments) in FINETUNE_PRESETS.items():
        if all(values[key] == value for key, value in assignments.items()):
            return preset
    return CUSTOM


def data_entry(text: str) -> str:
    """A data source as the headless command stores it: paths absolute (the run folder's config works from
    anywhere and on resume), hub datasets unchanged."""
    text = text.strip()
    if text.startswith(HUB_PREFIX):
        return text
    return str(Path(text).expanduser().resolve())


def data_entries(text: str) -> list[str]:
    """The data field (one source per line, or separated by commas) as a list of sources."""
    parts = [part for line in text.splitlines() for part in line.split(",")]
    return [data_entry(part) for part in parts if part.strip()]


def basic_overrides(model: str, data: list[str], preset: str, runs_directory: str) -> dict[str, Any]:
    """The ``{"section.name": value}`` assignments the basic answers stand for (a custom preset sets nothing)."""
    values: dict[str, Any] = {"model.model": model, "finetune.training_data": list(data),
                              "output.runs_directory": runs_directory}
    if preset != CUSTOM:
        values.update(FINETUNE_PRESETS[preset][1])
        values["finetune.max_steps"] = 0
    return values
