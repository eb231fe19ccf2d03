"""Running the built-in capability checks on a model, and comparing two models' results with a confidence interval.

Both checks are paired: the original and the trial see the same paragraphs and the same questions, so the
difference is taken item by item and its 95% interval comes from the spread of those differences (a normal
approximation, which is sound at the sizes used: a few hundred questions, a few dozen paragraphs). Nothing is
sampled, so a model gives the same numbers on every run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from heretic_tui.core.capability.general_text import GENERAL_TEXT
from heretic_tui.core.capability.multiple_choice import ITEMS, Item
from heretic_tui.core.models.likelihood import continuation_log_likelihoods, token_ids
from heretic_tui.core.models.loading import LoadedModel

Z_95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal distribution."""


@dataclass
class CapabilityResult:
    """One model's per-item results: right or wrong per question, negative log-likelihood per paragraph."""

    correct: list[bool]
    paragraph_loss: list[float]
    """Mean negative log-likelihood per token of each paragraph (nats)."""

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else 0.0

    @property
    def perplexity(self) -> float:
        return math.exp(statistics.fmean(self.paragraph_loss)) if self.paragraph_loss else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"multiple_choice_accuracy": self.accuracy, "questions": len(self.correct),
                "perplexity": self.perplexity, "paragraphs": len(self.paragraph_loss)}


def answer_items(loaded: LoadedModel, items: Sequence[Item], batch_size: int,
                 progress: Callable[[int], None] | None = None) -> list[bool]:
    """Whether the model's likeliest option is the right one, per item."""
    pairs = [(item.context(), " " + option) for item in items for option in item.options]
    scores = continuation_log_likelihoods(loaded, pairs, batch_size,
                                          None if progress is None else (lambda done: progress(done // 4)))
    correct = []
    offset = 0
    for item in items:
        row = scores[offset:offset + len(item.options)]
        offset += len(item.options)
        correct.append(row.index(max(row)) == item.answer)
    return correct


def paragraph_losses(loaded: LoadedModel, texts: Sequence[str]) -> list[float]:
    """Mean negative log-likelihood per predicted token of each text, each on its own (no padding)."""
    losses = []
    for text in texts:
        ids = token_ids(loaded.tokenizer, text)
        if loaded.tokenizer.bos_token_id is not None:
            ids = [loaded.tokenizer.bos_token_id] + ids
        if len(ids) < 2:
            continue
        tensor = torch.tensor([ids], device=loaded.device)
        with torch.inference_mode():
            logits = loaded.model(input_ids=tensor, use_cache=False).logits[0, :-1].float()
        losses.append(float(torch.nn.functional.cross_entropy(logits, tensor[0, 1:])))
    return losses


def run_checks(loaded: LoadedModel, batch_size: int, questions: int = len(ITEMS),
               progress: Callable[[int], None] | None = None) -> CapabilityResult:
    """Both checks on the model as it is now (with a trial's edit applied, if one is)."""
    return CapabilityResult(answer_items(loaded, ITEMS[:questions], batch_size, progress),
                            paragraph_losses(loaded, GENERAL_TEXT))


@dataclass
class Difference:
    """trial minus original, with its 95% confidence interval."""

    value: float
    low: float
    high: float


def paired_difference(original: Sequence[float], trial: Sequence[float]) -> Difference:
    differences = [after - before for before, after in zip(original, trial)]
    if not differences:
        return Difference(0.0, 0.0, 0.0)
    mean = statistics.fmean(differences)
    spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
    half = Z_95 * spread / math.sqrt(len(differences))
    return Difference(mean, mean - half, mean + half)


def compare_results(original: CapabilityResult, trial: CapabilityResult) -> dict[str, Any]:
    """What report.json and compare show: both models' figures and the trial's change with its interval.

    Accuracy changes by the mean of per-question differences (-1, 0 or 1); perplexity by the ratio exp(mean change
    of per-paragraph loss), whose interval is the exponential of the loss difference's interval.
    """
    accuracy = paired_difference([float(item) for item in original.correct], [float(item) for item in trial.correct])
    loss = paired_difference(original.paragraph_loss, trial.paragraph_loss)
    return {
        "original": original.summary(),
        "trial": trial.summary(),
        "accuracy_change": asdict(accuracy),
        "perplexity_ratio": {"value": math.exp(loss.value), "low": math.exp(loss.low), "high": math.exp(loss.high)},
        "confidence": 0.95,
    }
