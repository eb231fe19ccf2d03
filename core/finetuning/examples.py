"""Turning documents and conversations into training examples for the chosen mode.

Each mode maps to one of TRL's dataset formats, so TRL does the tokenizing and the loss masking it knows how to do:

- ``text``: language modelling rows ``{"text": ...}``; documents are cut into token windows that overlap, so a fact
  split by one window boundary is whole in the neighbouring window.
- ``instruct``: conversational prompt/completion rows; the loss is on the completion (the last assistant turn).
- ``chat``: conversational ``{"messages": [...]}`` rows; the loss is on every assistant turn.

Documents in the instruct and chat modes become question/answer pairs (synthesis.py, the default recipe) or, with
``finetune.document_recipe = "continuation"``, continue-the-passage pairs: each window is split at a sentence
boundary and the model is asked to continue the passage it comes from. Continuation teaches reciting; it is kept
as the baseline that the knowledge benchmark compares against.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from heretic_tui.core.finetuning.sources import KIND_CHAT, KIND_INSTRUCTION, Conversation, Document, SourceData

MODE_TEXT = "text"
MODE_INSTRUCT = "instruct"
MODE_CHAT = "chat"

PAIR_TEMPLATES = (
    'Continue this passage from "{title}":\n\n{head}',
    'What comes next in "{title}" after this passage?\n\n{head}',
    'Here is the start of a passage from "{title}". Finish it.\n\n{head}',
)
"""Instructions for pairs generated from documents; ``head`` is the first part of a window, the answer the rest."""

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def resolve_mode(mode: str, data: SourceData, chat_template: bool = False) -> str:
    """The mode to train in: the setting, or for 'auto' the richest format found in the data; documents alone
    train a chat model (one with a chat template) in the instruct mode, so it learns to answer questions about
    them, and any other model on the text itself."""
    if mode != "auto":
        return mode
    kinds = data.kinds
    if KIND_CHAT in kinds:
        return MODE_CHAT
    if KIND_INSTRUCTION in kinds or (chat_template and data.documents):
        return MODE_INSTRUCT
    return MODE_TEXT


def token_windows(tokenizer: Any, text: str, size: int, overlap: int) -> list[str]:
    """Cut text into windows of ``size`` tokens, neighbours sharing ``overlap`` tokens, as slices of the text.

    Slicing the original characters (through the tokenizer's offsets) keeps the text exactly as written, where
    decoding token ids would normalise spaces and special characters.
    """
    fast = getattr(tokenizer, "is_fast", False)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=fast, verbose=False)
    ids = encoded["input_ids"]
    if not ids:
        return []
    step = max(1, size - overlap)
    windows = []
    start = 0
    while True:
        end = min(start + size, len(ids))
        if fast:
            offsets = encoded["offset_mapping"]
            piece = text[offsets[start][0]:offsets[end - 1][1]]
        else:
            piece = tokenizer.decode(ids[start:end], skip_special_tokens=True)
        if piece.strip():
            windows.append(piece.strip())
        if end >= len(ids):
            return windows
        start += step


def split_passage(text: str) -> tuple[str, str] | None:
    """Split a window into a head (about a third, ending on a sentence if one ends there) and the rest."""
    words = text.split()
    if len(words) < 4:
        return None
    target = len(text) // 3
    boundaries = [match.end() for match in SENTENCE_END.finditer(text) if 0 < match.end() < len(text)]
    usable = [point for point in boundaries if len(text) // 6 <= point <= len(text) * 2 // 3]
    if usable:
        cut = min(usable, key=lambda point: abs(point - target))
        head, rest = text[:cut].strip(), text[cut:].strip()
    else:
        count = max(1, len(words) // 3)
        head, rest = " ".join(words[:count]), " ".join(words[count:])
    if not head or not rest:
        return None
    return head, rest


def document_pairs(document: Document, windows: Sequence[str], generator: random.Random) -> list[Conversation]:
    """Instruction/response pairs from the windows of one document."""
    pairs = []
    for number, window in enumerate(windows, start=1):
        parts = split_passage(window)
        if parts is None:
            continue
        head, rest = parts
        template = generator.choice(PAIR_TEMPLATES)
        prompt = template.format(title=document.title, head=head)
        pairs.append(Conversation((("user", prompt), ("assistant", rest)), f"{document.origin} window {number}",
                                  KIND_INSTRUCTION))
    return pairs


def build_examples(
    data: SourceData, mode: str, tokenizer: Any, chunk_tokens: int, chunk_overlap: int, seed: int,
    include_documents: bool = True,
) -> list[dict[str, Any]]:
    """Every training example of the data in the given (resolved) mode, in source order; documents are left out
    when they become question/answer pairs instead (``include_documents`` False)."""
    generator = random.Random(seed)
    examples: list[dict[str, Any]] = []
    for document in data.documents if include_documents else ():
        windows = token_windows(tokenizer, document.text, chunk_tokens, chunk_overlap)
        if mode == MODE_TEXT:
            examples.extend({"text": window} for window in windows)
        else:
            examples.extend(conversation_example(pair, mode) for pair in document_pairs(document, windows, generator))
    for conversation in data.conversations:
        if mode == MODE_TEXT:
            examples.append({"text": render_as_text(tokenizer, conversation.as_messages())})
        else:
            examples.append(conversation_example(conversation, mode))
    return examples


def conversation_example(conversation: Conversation, mode: str) -> dict[str, Any]:
    """A conversation as a TRL row: prompt/completion (loss on the last answer) or messages (every answer)."""
    messages = conversation.as_messages()
    last = max(index for index, message in enumerate(messages) if message["role"] == "assistant")
    if mode == MODE_INSTRUCT:
        return {"prompt": messages[:last], "completion": [messages[last]]}
    return {"messages": messages[:last + 1]}


def render_as_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """A conversation through the chat template as plain text, for the text mode (the tokenizer adds BOS itself)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        text = text[len(bos):]
    return text


def example_messages(example: dict[str, Any]) -> list[dict[str, str]] | None:
    """The whole conversation of a chat or instruct example; None for a text example."""
    if "messages" in example:
        return list(example["messages"])
    if "prompt" in example:
        return list(example["prompt"]) + list(example["completion"])
    return None


def example_prompt(example: dict[str, Any]) -> tuple[list[dict[str, str]] | str, str]:
    """What to ask the model and the answer the data holds, for the knowledge test.

    Chat and instruct examples ask the turns before the last answer; a text window asks its first half as plain
    text to be continued.
    """
    messages = example_messages(example)
    if messages is None:
        words = example["text"].split()
        half = max(1, len(words) // 2)
        return " ".join(words[:half]), " ".join(words[half:])
    return messages[:-1], messages[-1]["content"]
