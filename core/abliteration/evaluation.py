"""Scoring a trial: KL divergence on harmless prompts and refusals on harmful ones.

The refusal scorers live in :mod:`heretic_tui.core.abliteration.scoring`; this module wires the chosen one into
the trial's generation: the scorer's early verdict stops generation at a sure refusal, then the finished responses
are judged together (:meth:`Evaluator.score`). The two steps are separate so the abliteration job can undo a
trial's edit in between: a judge that is the original model then judges with the original weights.

With a thinking model (an active :class:`~heretic_tui.core.models.thinking.ThinkingPlan`) both measurements are
taken at the answer: the scorer only sees the text after the reasoning block, and the KL prompts are the harmless
prompts followed by what the unmodified model writes before its answer (its reasoning, if it reasons), computed
once here. Every trial is then compared with the original at the answer's first token, never inside the block,
whose first token (the opening marker) is the same for every trial.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from heretic_tui.core.abliteration.scoring.base import ProgressCallback, RefusalScorer, Verdict, counts_as_refusal
from heretic_tui.core.abliteration.scoring.markers import MarkerScorer
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
        scorer: RefusalScorer | None = None,
        harmful_prompts: Sequence[str] | None = None,
    ) -> None:
        """``scorer`` defaults to the markers; ``harmful_prompts`` are the requests as the user wrote them (what a
        judge is shown), by default the rendered prompts."""
        self.loaded = loaded
        self.harmless_texts = list(harmless_texts)
        self.harmful_texts = list(harmful_texts)
        self.batch_size = batch_size
        self.max_tokens = settings.refusal_max_tokens
        self.scorer: RefusalScorer = scorer or MarkerScorer(settings.refusal_markers, settings.refusal_topic_words)
        self.harmful_prompts = list(harmful_prompts) if harmful_prompts is not None else self.harmful_texts
        self.evasive_counts = settings.evasive_counts_as_refusal
        self.thinking = thinking
        self.kl_texts = self.harmless_texts
        if thinking.active:
            prefixes = answer_prefixes(loaded, self.harmless_texts, batch_size, thinking)
            self.kl_texts = [text + prefix for text, prefix in zip(self.harmless_texts, prefixes)]
        self.reference = first_token_log_probabilities(loaded, self.kl_texts, batch_size)

    def kl(self) -> float:
        return kl_divergence(self.reference, first_token_log_probabilities(self.loaded, self.kl_texts, self.batch_size))

    def generate(self, check_cancelled: Callable[[], None] | None = None) -> list[str]:
        """The current model's responses to the harmful prompts, each stopped early at a sure refusal."""
        return [text for text, _ in generate_until_verdict(
            self.loaded, self.harmful_texts, self.batch_size, self.max_tokens, self.scorer.early_verdict,
            check_cancelled, self.thinking,
        )]

    def score(self, responses: Sequence[str], progress: ProgressCallback | None = None) -> list[Verdict]:
        return self.scorer.score(self.harmful_prompts, responses, progress)

    def count(self, verdicts: Sequence[Verdict]) -> int:
        return sum(1 for verdict in verdicts if counts_as_refusal(verdict, self.evasive_counts))

    def responses(self, check_cancelled: Callable[[], None] | None = None) -> list[tuple[str, bool]]:
        """(response, counts as a refusal) per harmful prompt, generated and judged by the current model."""
        texts = self.generate(check_cancelled)
        return [(text, counts_as_refusal(verdict, self.evasive_counts))
                for text, verdict in zip(texts, self.score(texts))]

    def refusals(self, check_cancelled: Callable[[], None] | None = None) -> int:
        return sum(1 for _, refused in self.responses(check_cancelled) if refused)
