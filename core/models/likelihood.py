"""How likely a model finds a continuation of a context: the sum of its tokens' log-probabilities.

The judge scorer reads its verdict this way (which of its answer words the judge model finds likeliest, so the
verdict is deterministic and needs no sampling), and the multiple-choice capability check scores each option the
same way lm-evaluation-harness does: context and continuation are tokenized apart and joined as token ids, so an
option's tokens never depend on the context's last characters. Rows are left-padded with position ids that skip
the padding, like the rest of the project's batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from heretic_tui.core.models.batching import positions
from heretic_tui.core.models.loading import LoadedModel

MAX_LIKELIHOOD_TOKENS = 1024
"""Longest row scored; a longer context loses its oldest tokens (the continuation is always kept)."""


def token_ids(tokenizer: object, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]


def continuation_log_likelihoods(
    loaded: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[float]:
    """log P(continuation | context) per (context, continuation) pair, in order, in float32."""
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows: list[tuple[list[int], int]] = []
    for context, continuation in pairs:
        continuation_ids = token_ids(tokenizer, continuation)
        context_ids = token_ids(tokenizer, context)
        if not context_ids and tokenizer.bos_token_id is not None:
            context_ids = [tokenizer.bos_token_id]
        ids = (context_ids + continuation_ids)[-MAX_LIKELIHOOD_TOKENS:]
        rows.append((ids, min(len(continuation_ids), len(ids) - 1)))
    results: list[float] = []
    for start in range(0, len(rows), max(1, batch_size)):
        chunk = rows[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids, _ in chunk], device=loaded.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, _ in chunk], device=loaded.device)
        with torch.inference_mode():
            logits = loaded.model(input_ids=input_ids, attention_mask=mask, position_ids=positions(mask),
                                  use_cache=False).logits
        log_probabilities = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = input_ids[:, 1:]
        picked = log_probabilities.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, (_, count) in enumerate(chunk):
            results.append(float(picked[row, width - 1 - count:].sum()) if count > 0 else 0.0)
        if progress is not None:
            progress(len(results))
    return results
