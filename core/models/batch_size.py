"""Choosing the batch size: measured on the machine, because the fastest size depends on the model and the device."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from heretic_tui.core.models.generation import generate_until_verdict
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.settings import ModelSettings


def choose_batch_size(
    loaded: LoadedModel,
    texts: Sequence[str],
    settings: ModelSettings,
    log: Callable[[str], None] = print,
) -> int:
    """The fastest batch size that fits: try powers of two and keep the best prompts-per-second.

    Each candidate generates a few tokens for a full batch, repeated for at least a quarter of a second so a busy
    machine does not decide the result; the search stops at the first out-of-memory error or once throughput has
    clearly dropped twice. Ties go to the larger size, which wins on longer generations.
    """
    if settings.batch_size:
        return settings.batch_size
    undecided: Callable[[str, bool], bool | None] = lambda text, finished: None if not finished else False
    best_size, best_rate = 1, 0.0
    limit = min(settings.max_batch_size, max(1, len(texts)))
    size, worse = 1, 0
    while size <= limit:
        sample = list(texts[:size])
        try:
            generate_until_verdict(loaded, sample, size, 2, undecided)
            repetitions, started = 0, time.perf_counter()
            while repetitions < 5 and (repetitions < 1 or time.perf_counter() - started < 0.25):
                generate_until_verdict(loaded, sample, size, 8, undecided)
                repetitions += 1
            rate = size * repetitions / (time.perf_counter() - started)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            log(f"batch size {size} does not fit in memory")
            break
        log(f"batch size {size}: {rate:.1f} prompts/s")
        if rate >= 0.95 * best_rate:
            if rate > best_rate or size > best_size:
                best_size, best_rate = size, max(rate, best_rate)
            worse = 0
        elif rate < 0.9 * best_rate:
            worse += 1
            if worse >= 2:
                break
        size = size * 2 if size * 2 <= limit or size == limit else limit
    return best_size
