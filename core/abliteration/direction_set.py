"""The directions a run shares: every direction method's per-layer directions, how well each separates held-out
residuals, and their file in the run folder (directions.safetensors).

All four methods are computed for every run (they cost little next to reading the residuals), so a study that
searches the method, an ensemble, a resumed run and an export all read the same file, and the separation
diagnostic compares every method on the same held-out prompts.

The file holds ``directions`` (the difference of means, the name it has always had, so older readers keep
working), ``directions.<method>`` for the others and, when something is protected, ``protected`` (the orthonormal
basis per layer every trial's directions are made orthogonal to, see
:mod:`~heretic_tui.core.abliteration.protection`); its metadata holds the digest of the settings that made it and
the diagnostics as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from heretic_tui.core.abliteration.directions import (
    align_signs,
    compute_directions,
    ensemble_directions,
    mean_differences,
    pca_directions,
    remove_component,
    separation_auc,
)
from heretic_tui.core.abliteration.methods import DIRECTION_METHODS, ENSEMBLE, MEAN, PCA, PROBE
from heretic_tui.core.abliteration.probing import train_probes

T = TypeVar("T")

MEAN_KEY = "directions"
PROTECTED_KEY = "protected"
SETTINGS_KEY = "direction_settings"
DIAGNOSTICS_KEY = "diagnostics"


def tensor_key(method: str) -> str:
    return MEAN_KEY if method == MEAN else f"{MEAN_KEY}.{method}"


@dataclass
class DirectionSet:
    """Unit directions per method, each [layers, hidden]; ``diagnostics`` as :func:`build_direction_set` made them;
    ``protected``, the orthonormal basis per layer ([layers, k, hidden]) a trial's directions are made orthogonal to
    (None: nothing is protected)."""

    by_method: dict[str, torch.Tensor]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    protected: torch.Tensor | None = None

    @classmethod
    def of(cls, directions: torch.Tensor) -> DirectionSet:
        """A set with one method's directions, the difference of means (tests, benchmarks, older run folders)."""
        return cls({MEAN: directions})

    @property
    def mean(self) -> torch.Tensor:
        return self.by_method[MEAN]

    @property
    def shape(self) -> torch.Size:
        """[layers, hidden], the shape every method's directions share."""
        return self.mean.shape

    def get(self, method: str) -> torch.Tensor:
        directions = self.by_method.get(method)
        if directions is None:
            raise ValueError(
                f"The direction method {method!r} is not among this run's directions ({', '.join(self.by_method)}); "
                "its directions.safetensors was written by an older heretic-tui. Resume the run to compute them."
            )
        return directions

    def to_bytes(self, fingerprint: str) -> bytes:
        tensors = {tensor_key(method): directions.float().contiguous() for method, directions in self.by_method.items()}
        if self.protected is not None:
            tensors[PROTECTED_KEY] = self.protected.float().contiguous()
        return save(tensors, {SETTINGS_KEY: fingerprint, DIAGNOSTICS_KEY: json.dumps(self.diagnostics)})

    @classmethod
    def read(cls, path: Path) -> tuple[DirectionSet, str | None]:
        """The set in a directions file and the settings digest it was made with (None for older files).

        Raises what safetensors raises for a damaged file and KeyError when it has no ``directions``.
        """
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as opened:
            metadata = opened.metadata() or {}
        by_method = {method: tensors[tensor_key(method)] for method in DIRECTION_METHODS
                     if tensor_key(method) in tensors}
        if MEAN not in by_method:
            raise KeyError(MEAN_KEY)
        try:
            diagnostics = json.loads(metadata.get(DIAGNOSTICS_KEY, "{}"))
        except ValueError:
            diagnostics = {}
        return (cls(by_method, diagnostics if isinstance(diagnostics, dict) else {}, tensors.get(PROTECTED_KEY)),
                metadata.get(SETTINGS_KEY))


def on_device(compute: Callable[[torch.device | str], T], device: torch.device | str) -> T:
    """``compute(device)``, or ``compute("cpu")`` when the device runs out of memory (a model that fills its GPU
    leaves little room for the residuals of every layer at once)."""
    try:
        return compute(device)
    except torch.cuda.OutOfMemoryError:
        if torch.device(device).type == "cpu":
            raise
        torch.cuda.empty_cache()
        return compute("cpu")


def build_direction_set(harmful: torch.Tensor, harmless: torch.Tensor, held_out_harmful: torch.Tensor,
                        held_out_harmless: torch.Tensor, orthogonalize: bool = False,
                        device: torch.device | str = "cpu") -> DirectionSet:
    """Every method's directions from residuals [prompts, layers, hidden], computed on ``device`` (on the CPU when
    it runs out of memory), with the per-layer separation (ROC AUC) of each on the held-out residuals and the
    probe's held-out accuracy.

    With ``orthogonalize`` every method's direction loses its component along the layer's harmless mean.
    """
    return on_device(lambda chosen: _build_direction_set(harmful, harmless, held_out_harmful, held_out_harmless,
                                                         orthogonalize, chosen), device)


def _build_direction_set(harmful: torch.Tensor, harmless: torch.Tensor, held_out_harmful: torch.Tensor,
                         held_out_harmless: torch.Tensor, orthogonalize: bool,
                         device: torch.device | str) -> DirectionSet:
    harmful, harmless = harmful.float().to(device), harmless.float().to(device)
    held_out_harmful, held_out_harmless = held_out_harmful.float().to(device), held_out_harmless.float().to(device)
    reference = mean_differences(harmful, harmless)
    probes = train_probes(harmful, harmless)
    by_method = {
        MEAN: compute_directions(harmful, harmless),
        PCA: pca_directions(harmful, harmless),
        PROBE: align_signs(probes.directions(), reference),
    }
    by_method[ENSEMBLE] = ensemble_directions([by_method[MEAN], by_method[PCA], by_method[PROBE]])
    if orthogonalize:
        harmless_mean = harmless.mean(dim=0)
        by_method = {method: remove_component(directions, harmless_mean) for method, directions in by_method.items()}
    diagnostics = {
        "held_out_auc": {method: separation_auc(directions, held_out_harmful, held_out_harmless)
                         for method, directions in by_method.items()},
        "probe_held_out_accuracy": probes.accuracy(held_out_harmful, held_out_harmless),
        "held_out_prompts": {"harmful": held_out_harmful.shape[0], "harmless": held_out_harmless.shape[0]},
    }
    return DirectionSet({method: directions.cpu() for method, directions in by_method.items()}, diagnostics)


def summarize_diagnostics(diagnostics: dict[str, Any]) -> dict[str, str]:
    """One figure per method for the dashboard: its best held-out separation and the layer it is at."""
    summary = {}
    for method, values in diagnostics.get("held_out_auc", {}).items():
        if values:
            best = max(range(len(values)), key=lambda layer: values[layer])
            summary[f"{method} AUC"] = f"{values[best]:.3f} at layer {best}"
    accuracy = diagnostics.get("probe_held_out_accuracy") or []
    if accuracy:
        best = max(range(len(accuracy)), key=lambda layer: accuracy[layer])
        summary["probe accuracy"] = f"{accuracy[best]:.3f} at layer {best}"
    return summary
