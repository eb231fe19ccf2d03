"""The scorer the settings name, built once per job."""

from __future__ import annotations

from heretic_tui.core.abliteration.scoring.base import RefusalScorer
from heretic_tui.core.abliteration.scoring.markers import MarkerScorer
from heretic_tui.core.settings import AbliterationSettings


def make_scorer(settings: AbliterationSettings) -> RefusalScorer:
    if settings.refusal_scorer == "markers":
        return MarkerScorer(settings.refusal_markers)
    raise ValueError(f"unknown refusal scorer {settings.refusal_scorer!r}")
