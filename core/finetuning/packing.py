"""Packing that pays off without FlashAttention.

TRL packs with best-fit-decreasing and then trains "padding-free": the whole batch is flattened into one long row
and the sequence boundaries go to the attention kernel. That is the fastest layout with FlashAttention's variable-
length kernels; with any other attention (SDPA, eager: every CPU, and GPUs without flash-attn installed) the one
row of ``batch x length`` tokens gets a dense block mask, so attention costs ``batch`` times more than unpacked
training and packing ends up slower than padding.

Without FlashAttention the packed examples therefore stay in rows of at most ``max_length`` tokens (TRL's own
``pack_dataset``), and the collator hands the model per-example position ids and no attention mask; transformers
then builds a block-diagonal causal mask per row, so examples never attend to each other and attention costs what
it costs unpacked, minus the padding.
"""

from __future__ import annotations

from typing import Any

import torch


def has_variable_length_attention(model: Any) -> bool:
    """True when the model runs FlashAttention, whose kernels make TRL's padding-free packing the right choice."""
    implementation = str(getattr(model.config, "_attn_implementation", "") or "")
    return "flash" in implementation


class PackedRowsCollator:
    """Pads packed rows on the right with position ids restarting at every example and no attention mask.

    The first token of each example gets no label: it would otherwise be predicted from the previous example.
    """

    def __init__(self, pad_token_id: int) -> None:
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.inner = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, return_position_ids=True)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.inner(examples)
        batch.pop("attention_mask", None)
        batch["labels"][batch["position_ids"] == 0] = -100
        return batch


def pack_into_rows(trainer: Any, length: int) -> None:
    """Replace the trainer's tokenized training set by packed rows, and its collator by one that keeps them apart."""
    from trl.data_utils import pack_dataset

    dataset = trainer.train_dataset.select_columns(["input_ids", "labels"])
    trainer.train_dataset = pack_dataset(dataset, length, "bfd")
    trainer.data_collator = PackedRowsCollator(trainer.processing_class.pad_token_id)
