"""Scoring a trial: KL divergence on harmless prompts and refusals on harmful ones.

The refusal scorers live in :mod:`heretic_tui.core.abliteration.scoring`; this module wires the chosen one into
the trial's generation.

With a thinking model (an active :class:`~heretic_tui.core.models.thinking.ThinkingPlan`) both measurements are
taken at the answer: the scorer only sees the text after the reasoning block, and the KL prompts are the harmless
prompts followed by what the unmodified model writes before its answer (its reasoning, if it reasons), computed
once here. Every trial is then compared with the original at the answer's first token, never inside the block,
whose first token (the opening marker) is the same for every trial.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from heretic_tui.core.abliteration.scoring.selection import make_scorer
from heretic_tui.core.models.generation import (
    answer_prefixes,
    first_token_log_probabilities,
    generate_until_verdict,
)
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.models.thinking import NO_HANDLING, ThinkingPlan
from heretic_tui.core.settings import AbliterationSettings


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
        thinking: ThinkingPlan = NO_HANDLING,
    ) -> None:
        self.loaded = loaded
        self.harmless_texts = list(harmless_texts)
        self.harmful_texts = list(harmful_texts)
        self.batch_size = batch_size
        self.max_tokens = settings.refusal_max_tokens
        self.scorer = make_scorer(settings)
        self.thinking = thinking
        self.kl_texts = self.harmless_texts
        if thinking.active:
            prefixes = answer_prefixes(loaded, self.harmless_texts, batch_size, thinking)
            self.kl_texts = [text + prefix for text, prefix in zip(self.harmless_texts, prefixes)]
        self.reference = first_token_log_probabilities(loaded, self.kl_texts, batch_size)

    def kl(self) -> float:
        return kl_divergence(self.reference, first_token_log_probabilities(self.loaded, self.kl_texts, self.batch_size))

    def responses(self, check_cancelled: Callable[[], None] | None = None) -> list[tuple[str, bool]]:
        return generate_until_verdict(
            self.loaded, self.harmful_texts, self.batch_size, self.max_tokens, self.scorer.verdict, check_cancelled,
            self.thinking,
        )

    def refusals(self, check_cancelled: Callable[[], None] | None = None) -> int:
        return sum(1 for _, refused in self.responses(check_cancelled) if refused)
