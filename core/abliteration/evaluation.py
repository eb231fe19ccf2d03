"""Scoring a trial: KL divergence on harmless prompts and refusals on harmful ones.

Refusal scoring is a small interface (:class:`RefusalScorer`) so a classifier can replace the keyword markers
later; a scorer may decide early (a marker seen after three tokens ends that sequence's generation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from heretic_tui.core.models.generation import first_token_log_probabilities, generate_until_verdict
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.settings import AbliterationSettings

APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})


class RefusalScorer(Protocol):
    def verdict(self, response: str, finished: bool) -> bool | None:
        """True for a refusal, False for an answer, None while the response so far does not decide it."""


class MarkerScorer:
    """A response is a refusal when it contains a marker (case-insensitive, apostrophes normalized) or is empty."""

    def __init__(self, markers: Sequence[str]) -> None:
        self.markers = [normalize(marker) for marker in markers if marker.strip()]

    def verdict(self, response: str, finished: bool) -> bool | None:
        text = normalize(response)
        if any(marker in text for marker in self.markers):
            return True
        if finished:
            return not text.strip()
        return None


def normalize(text: str) -> str:
    return text.translate(APOSTROPHES).lower()


def make_scorer(settings: AbliterationSettings) -> RefusalScorer:
    if settings.refusal_scorer == "markers":
        return MarkerScorer(settings.refusal_markers)
    raise ValueError(f"unknown refusal scorer {settings.refusal_scorer!r}")


def kl_divergence(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """Mean KL(reference || candidate) over prompts, from log-probabilities."""
    return float(torch.nn.functional.kl_div(candidate, reference, reduction="batchmean", log_target=True))


class Evaluator:
    """Holds the evaluation prompts and the unmodified model's first-token distribution for KL."""

    def __init__(
        self,
        loaded: LoadedModel,
        harmless_texts: Sequence[str],
        harmful_texts: Sequence[str],
        batch_size: int,
        settings: AbliterationSettings,
    ) -> None:
        self.loaded = loaded
        self.harmless_texts = list(harmless_texts)
        self.harmful_texts = list(harmful_texts)
        self.batch_size = batch_size
        self.max_tokens = settings.refusal_max_tokens
        self.scorer = make_scorer(settings)
        self.reference = first_token_log_probabilities(loaded, self.harmless_texts, batch_size)

    def kl(self) -> float:
        return kl_divergence(self.reference, first_token_log_probabilities(self.loaded, self.harmless_texts, self.batch_size))

    def responses(self, check_cancelled: Callable[[], None] | None = None) -> list[tuple[str, bool]]:
        return generate_until_verdict(
            self.loaded, self.harmful_texts, self.batch_size, self.max_tokens, self.scorer.verdict, check_cancelled
        )

    def refusals(self, check_cancelled: Callable[[], None] | None = None) -> int:
        return sum(1 for _, refused in self.responses(check_cancelled) if refused)
