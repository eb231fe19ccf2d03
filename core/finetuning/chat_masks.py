"""Assistant-only loss for chat templates that TRL cannot mask.

TRL computes the assistant mask from ``{% generation %}`` markers in the chat template, and swaps in a marked copy
for the templates it knows (Llama 3, Qwen, Gemma, Phi ...). Any other template (a fine-tune's own, a community
model's, the small test models') would otherwise train on the user turns too, which teaches the model to write the
user's side of the conversation. For those, the mask is computed here from the template itself: the conversation is
rendered up to each assistant turn (with the generation prompt) and through it, and the characters in between,
the answer and its end-of-turn marker, are the ones the model must learn to produce. The rendered text is tokenized
once with character offsets, exactly as TRL would tokenize it, and the tokens inside those spans get the loss.
The result is a pre-tokenized TRL dataset (``input_ids`` + ``assistant_masks``) that TRL turns into labels,
truncates and packs as usual.
"""

from __future__ import annotations

from typing import Any

from heretic_tui.core.errors import UserInputError


def trl_can_mask(tokenizer: Any) -> bool:
    """True when TRL's assistant_only_loss works with this tokenizer's template (markers, or a known template)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if not template:
        return False
    if has_generation_markers(template):
        return True
    try:
        get_training_chat_template(tokenizer)
    except (ValueError, TypeError):
        return False
    return True


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (end-of-turn marker included)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True) \
            if index else ""
        through = tokenizer.apply_chat_template(messages[:index + 1], tokenize=False)
        if not full.startswith(through) or not through.startswith(before):
            raise UserInputError(
                "The model's chat template renders earlier turns differently once later turns follow, so the "
                "assistant turns of a conversation cannot be found for assistant-only loss. Train with --mode "
                "instruct (loss on the last answer of each conversation), or set model.chat_template to a template "
                "with {% generation %} markers."
            )
        spans.append((len(before), len(through)))
    return full, spans


def tokenize_with_assistant_mask(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """``input_ids`` of the rendered conversation and ``assistant_masks`` (1 where the token is the assistant's)."""
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    mask = []
    for start, end in encoded["offset_mapping"]:
        inside = any(span_start <= start < span_end for span_start, span_end in spans) and end > start
        mask.append(1 if inside else 0)
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}


def masked_chat_dataset(tokenizer: Any, rows: list[dict[str, Any]]) -> Any:
    """A pre-tokenized TRL dataset for chat rows, with the assistant masks computed from the template."""
    from datasets import Dataset

    if not getattr(tokenizer, "is_fast", False):
        raise UserInputError(
            "Assistant-only loss for this model's chat template needs a fast tokenizer (tokenizer.json), which the "
            "model does not ship. Train with --mode instruct instead, or use a model folder with tokenizer.json."
        )
    return Dataset.from_list([tokenize_with_assistant_mask(tokenizer, row["messages"]) for row in rows])
