"""The names of the abliteration methods and which of them a study fixes or leaves to Optuna.

A method setting (``abliteration.direction_method``, ``ablation_method``, ``edited_components``) either names one
method, which every trial of the study uses, or is ``search``, which makes it a categorical parameter of the study
(:func:`heretic_tui.core.abliteration.study.suggest_parameters`). Every trial records the methods it used in its
parameters, so report.json, the export and ``heretic.json`` reproduce the trial whatever the settings say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heretic_tui.core.settings import AbliterationSettings

SEARCH = "search"
"""The setting value that leaves a method to the search."""

MEAN = "mean"
PCA = "pca"
PROBE = "probe"
ENSEMBLE = "ensemble"
DIRECTION_METHODS: tuple[str, ...] = (MEAN, PCA, PROBE, ENSEMBLE)
"""Difference of means, contrastive PCA, a linear probe, and the normalized sum of the three."""

PROJECTION = "projection"
NORM_PRESERVING = "norm_preserving"
ABLATION_METHODS: tuple[str, ...] = (PROJECTION, NORM_PRESERVING)
"""Plain projection, W <- (I - w d d^T) W; and MPOA, the same with each edited row rescaled to its original norm."""

BOTH = "both"
ATTENTION = "attention"
MLP = "mlp"
COMPONENT_CHOICES: tuple[str, ...] = (BOTH, ATTENTION, MLP)
"""Which residual-writing weights a trial edits: attention output projections, MLP down projections, or both."""


def edited_kinds(choice: str) -> tuple[str, ...]:
    """The component kinds (``attention``, ``mlp``) a components choice edits."""
    return (ATTENTION, MLP) if choice == BOTH else (choice,)


@dataclass(frozen=True)
class MethodChoices:
    """What the study's settings fix and what they leave to the search (the value ``search``)."""

    direction_method: str = MEAN
    ablation_method: str = PROJECTION
    edited_components: str = BOTH
    weight_range: tuple[float, float] = (0.8, 1.5)
    """The search range of each component's peak ablation weight."""

    @classmethod
    def from_settings(cls, settings: AbliterationSettings) -> MethodChoices:
        return cls(settings.direction_method, settings.ablation_method, settings.edited_components,
                   (settings.lowest_ablation_weight, settings.highest_ablation_weight))


DIRECTION_SETTINGS: tuple[str, ...] = (
    "orthogonalize_direction", "winsorize_quantile", "helpfulness_orthogonalization", "general_text_prompts",
    "sacred_directions", "capability_prompts",
)
"""The study-wide abliteration settings that shape the directions every trial of a run shares."""


def method_record(settings: AbliterationSettings, parameters: dict[str, Any]) -> dict[str, Any]:
    """The methods that made one trial, for report.json and ``heretic.json``: what the trial chose (its parameters;
    the defaults for a trial recorded before methods existed) and the study-wide settings that shaped its
    directions."""
    record: dict[str, Any] = {
        "direction_method": parameters.get("direction_method", MEAN),
        "ablation_method": parameters.get("ablation_method", PROJECTION),
        "edited_components": parameters.get("edited_components", BOTH),
    }
    for name in DIRECTION_SETTINGS:
        record[name] = getattr(settings, name)
    return record
