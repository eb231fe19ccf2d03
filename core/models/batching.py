"""Turning rendered prompts into model inputs, a batch at a time.

Padding is on the left (the tokenizer is loaded that way), so the last position of every row is the last prompt
token, which is where residuals are read and where generation continues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch

Item = TypeVar("Item")


def encode(tokenizer: Any, texts: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
    """Tokenize a batch with left padding; the templates already hold the special tokens."""
    batch = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    return {key: value.to(device) for key, value in batch.items() if key in ("input_ids", "attention_mask")}


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding, as generate() computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def batches(items: Sequence[Item], size: int) -> list[Sequence[Item]]:
    return [items[start:start + size] for start in range(0, len(items), size)]
