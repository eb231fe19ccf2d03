"""What a model says next: the first answer token's distribution, and greedy answers that stop once judged.

Both run batched with the KV cache; generation drops rows from the batch (and the cache) as soon as their verdict
is known, so a batch of quick refusals costs a few tokens instead of the whole token budget.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from heretic_tui.core.models.batching import batches, encode, positions
from heretic_tui.core.models.loading import LoadedModel


def first_token_log_probabilities(loaded: LoadedModel, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """Log-probabilities of the first generated token for each prompt, in float32: shape [prompts, vocabulary]."""
    rows = []
    for chunk in batches(texts, batch_size):
        batch = encode(loaded.tokenizer, chunk, loaded.device)
        with torch.inference_mode():
            output = loaded.model(**batch, position_ids=positions(batch["attention_mask"]), use_cache=False,
                                  logits_to_keep=1)
        rows.append(torch.log_softmax(output.logits[:, -1, :].float(), dim=-1))
    return torch.cat(rows)


def generate_until_verdict(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    verdict: Callable[[str, bool], bool | None],
    check_cancelled: Callable[[], None] | None = None,
) -> list[tuple[str, bool]]:
    """Greedy generation where each sequence stops as soon as ``verdict(text, finished)`` returns a bool.

    Rows whose verdict is known are dropped from the batch and from the KV cache. Returns (response, verdict) per
    prompt, in order.
    """
    tokenizer = loaded.tokenizer
    eos_ids = end_of_sequence_ids(loaded)
    results: list[tuple[str, bool] | None] = [None] * len(texts)
    for offset in range(0, len(texts), batch_size):
        chunk = texts[offset:offset + batch_size]
        batch = encode(tokenizer, chunk, loaded.device)
        attention_mask = batch["attention_mask"]
        position_ids = positions(attention_mask)
        rows = list(range(offset, offset + len(chunk)))
        generated: list[list[int]] = [[] for _ in chunk]
        active = list(range(len(chunk)))
        with torch.inference_mode():
            output = loaded.model(input_ids=batch["input_ids"], attention_mask=attention_mask,
                                  position_ids=position_ids, use_cache=True, logits_to_keep=1)
            cache = getattr(output, "cache", None) or output.past_key_values
            cache_keyword = cache_argument_name(loaded.model)
            for step in range(max_new_tokens):
                if check_cancelled:
                    check_cancelled()
                next_tokens = output.logits[:, -1, :].argmax(dim=-1)
                keep: list[int] = []
                for slot, local in enumerate(active):
                    token = int(next_tokens[slot])
                    finished = token in eos_ids
                    if not finished:
                        generated[local].append(token)
                    last = finished or step == max_new_tokens - 1
                    text = tokenizer.decode(generated[local], skip_special_tokens=True)
                    decision = verdict(text, last)
                    if decision is None and last:
                        decision = False
                    if decision is not None:
                        results[rows[local]] = (text, bool(decision))
                    else:
                        keep.append(slot)
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=attention_mask.device)
                    cache.batch_select_indices(index)
                    attention_mask = attention_mask[index]
                    position_ids = position_ids[index]
                    next_tokens = next_tokens[index]
                    active = [active[slot] for slot in keep]
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=1)
                position_ids = position_ids[:, -1:] + 1
                output = loaded.model(input_ids=next_tokens[:, None], attention_mask=attention_mask,
                                      position_ids=position_ids, use_cache=True, **{cache_keyword: cache})
    return [item if item is not None else ("", True) for item in results]


def cache_argument_name(model: Any) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; use whichever this model's forward takes."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def end_of_sequence_ids(loaded: LoadedModel) -> set[int]:
    """Every token id that ends an answer: the generation config's (often several) and the tokenizer's."""
    ids: set[int] = set()
    config_eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    for value in (config_eos, loaded.tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(item) for item in value)
    return ids
