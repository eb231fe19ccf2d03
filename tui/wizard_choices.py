"""The basic wizard's choices and the settings each one stands for.

The basic wizard asks five things; two of them (prompt preset, precision) set several settings at once. The
mapping lives here, in one place, so the wizard, its tests and the headless flags it must agree with read the same
table. Prompt presets reuse the prompt sources the core itself resolves ``auto`` to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heretic_tui.core.api import DEMO_DEFAULTS, PUBLIC_DEFAULTS

PROMPT_SETTINGS = ("good_prompts", "bad_prompts", "good_eval_prompts", "bad_eval_prompts")
CUSTOM = "custom"

PROMPT_PRESETS: dict[str, tuple[str, dict[str, str]]] = {
    "auto": ("Automatic: built-in for the demo, public datasets otherwise",
             {name: "auto" for name in PROMPT_SETTINGS}),
    "builtin": ("Built-in offline prompts (no download)", dict(DEMO_DEFAULTS)),
    "public": ("Public datasets: mlabonne harmful_behaviors / harmless_alpaca", dict(PUBLIC_DEFAULTS)),
}

DEFAULT_DTYPES = ["auto", "bfloat16", "float16", "float32"]
PRECISIONS: dict[str, tuple[str, list[str], str]] = {
    "auto": ("Automatic: the model's dtype, then bf16, fp16, fp32", DEFAULT_DTYPES, "none"),
    "bfloat16": ("bfloat16", ["bfloat16"], "none"),
    "float16": ("float16", ["float16"], "none"),
    "float32": ("float32 (CPU or small models)", ["float32"], "none"),
    "4bit": ("4-bit quantized weights (CUDA and bitsandbytes)", DEFAULT_DTYPES, "4bit"),
    "8bit": ("8-bit quantized weights (CUDA and bitsandbytes)", DEFAULT_DTYPES, "8bit"),
}


def prompt_preset_values(preset: str) -> dict[str, str]:
    return dict(PROMPT_PRESETS[preset][1])


def prompt_preset_of(values: Mapping[str, Any]) -> str:
    """The preset the prompt sources (``prompts.*`` in values) match, or ``custom`` when set one by one."""
    current = {name: values[f"prompts.{name}"] for name in PROMPT_SETTINGS}
    for preset, (_, values) in PROMPT_PRESETS.items():
        if current == values:
            return preset
    return CUSTOM


def precision_values(precision: str) -> tuple[list[str], str]:
    _, dtypes, quantization = PRECISIONS[precision]
    return list(dtypes), quantization


def precision_of(values: Mapping[str, Any]) -> str:
    """The precision choice that ``model.dtypes`` and ``model.quantization`` in values match, or ``custom``."""
    for precision, (_, dtypes, quantization) in PRECISIONS.items():
        if values["model.dtypes"] == dtypes and values["model.quantization"] == quantization:
            return precision
    return CUSTOM


def basic_overrides(model: str, preset: str, trials: int, precision: str, runs_directory: str) -> dict[str, Any]:
    """The ``{"section.name": value}`` assignments the five basic answers stand for (custom choices set nothing)."""
    values: dict[str, Any] = {"model.model": model, "optimization.trials": trials,
                              "output.runs_directory": runs_directory}
    if preset != CUSTOM:
        values.update({f"prompts.{name}": value for name, value in prompt_preset_values(preset).items()})
    if precision != CUSTOM:
        dtypes, quantization = precision_values(precision)
        values["model.dtypes"] = dtypes
        values["model.quantization"] = quantization
    return values
