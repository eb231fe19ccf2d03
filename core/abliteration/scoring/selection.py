"""The scorer the settings name, built once per job (the judge model loaded here when it is not the original)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from heretic_tui.core.abliteration.scoring.base import RefusalScorer
from heretic_tui.core.abliteration.scoring.markers import MarkerScorer
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.settings import Settings

SCORERS = ("markers", "classifier", "judge", "layered")
NEEDS_JUDGE = ("judge", "layered")


def marker_scorer(settings: Settings) -> MarkerScorer:
    return MarkerScorer(settings.abliteration.refusal_markers, settings.abliteration.refusal_topic_words)


def make_scorer(settings: Settings, original: LoadedModel | None, batch_size: int = 8,
                log: Callable[[str], None] = print) -> RefusalScorer:
    """The configured scorer; ``original`` is the unmodified model, the judge when no judge_model is set."""
    from heretic_tui.core.abliteration.scoring.classifier import ClassifierScorer
    from heretic_tui.core.abliteration.scoring.judge import JudgeScorer
    from heretic_tui.core.abliteration.scoring.layered import LayeredScorer

    abliteration = settings.abliteration
    name = abliteration.refusal_scorer
    if name == "markers":
        return marker_scorer(settings)
    if name == "classifier":
        device = original.device if original is not None else None
        return ClassifierScorer(abliteration.classifier_model, abliteration.classifier_refusal_label,
                                abliteration.classifier_evasive_label, batch_size, device)
    if name in NEEDS_JUDGE:
        judge_model = original
        if abliteration.judge_model:
            from heretic_tui.core.models.loading import load_model

            log(f"loading the judge model {abliteration.judge_model}")
            judge_model = load_model(dataclasses.replace(settings.model, model=abliteration.judge_model), log=log)
        if judge_model is None:
            raise ValueError("the judge needs the original model or abliteration.judge_model")
        judge = JudgeScorer(judge_model, abliteration.judge_prompt, abliteration.judge_answers, batch_size)
        return judge if name == "judge" else LayeredScorer(marker_scorer(settings), judge)
    raise ValueError(f"unknown refusal scorer {name!r}")
