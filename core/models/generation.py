"""What a model says next: the first answer token's distribution, and greedy answers that stop once judged.

Both run batched with the KV cache; generation drops rows from the batch (and the cache) as soon as their verdict
is known, so a batch of quick refusals costs a few tokens instead of the whole token budget.

For a thinking model (a :class:`~heretic_tui.core.models.thinking.ThinkingPlan` that is active) each row is
followed by a :class:`ResponseReader`: a reasoning block gets its own token budget, the closing marker is written
for the model when the budget runs out or when it tries to stop inside the block, and the verdict only ever sees
the answer after the block, which keeps its own budget of ``max_new_tokens``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from heretic_tui.core.models.batching import batches, encode, positions
from heretic_tui.core.models.incremental_decoding import IncrementalText, streaming_backend
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.models.thinking import (
    OPENING_ALLOWANCE,
    UNDECIDED,
    ReasoningBlock,
    ThinkingPlan,
    block_left_open,
    opening_block,
    reasoning_token_allowance,
)

CLOSING_WINDOW = 24
"""Tokens at the end of a reasoning block decoded to look for its closing marker (markers are a few tokens)."""


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


@dataclass
class Response:
    """One greedy response, split where its answer starts."""

    answer: str
    """The answer's text (special tokens dropped): what the verdict judged."""
    refused: bool
    tokens: list[int]
    """Every generated token, reasoning and forced markers included (an ending token is not kept)."""
    answer_start: int
    """Index in ``tokens`` where the answer begins (0 when the model answered at once)."""
    forced_close: bool = False
    """The reasoning block was closed for the model (budget spent, or it tried to stop inside the block)."""


OPENING, REASONING, ANSWER = "opening", "reasoning", "answer"


class ResponseReader:
    """Follows one row's tokens through the phases of a response: opening (does a reasoning block start?),
    reasoning (inside a block, with its own budget) and answer."""

    def __init__(self, tokenizer: Any, prompt: str, thinking: ThinkingPlan | None,
                 streaming: Any | None = None) -> None:
        """``streaming``: the tokenizer's backend from
        :func:`~heretic_tui.core.models.incremental_decoding.streaming_backend`, looked up once per generation."""
        self.tokenizer = tokenizer
        self._streaming = streaming
        self._answer: IncrementalText | None = None
        self._answer_from = 0
        self.thinking = thinking if thinking is not None and thinking.active else None
        self.tokens: list[int] = []
        self.answer_start = 0
        self.forced: list[int] = []
        self.forced_close = False
        self.spent_before_answer = 0
        self.block: ReasoningBlock | None = None
        self.block_start = 0
        self.phase = ANSWER
        if self.thinking is not None:
            self.block = block_left_open(prompt, self.thinking.blocks)
            self.phase = REASONING if self.block is not None else OPENING

    @property
    def in_answer(self) -> bool:
        return self.phase == ANSWER

    @property
    def answer_tokens(self) -> int:
        return len(self.tokens) - self.answer_start if self.in_answer else 0

    def answer_text(self) -> str:
        """The answer so far, for the verdict after each token: decoded incrementally (see
        :mod:`~heretic_tui.core.models.incremental_decoding`), with at most a character still split over byte
        tokens left out where a whole decode would show a replacement character."""
        if not self.in_answer:
            return ""
        if self._answer is None or self._answer_from != self.answer_start:
            self._answer, self._answer_from = IncrementalText(self.tokenizer, self._streaming), self.answer_start
        self._answer.extend(self.tokens[self.answer_start + len(self._answer.tokens):])
        return self._answer.text

    def final_answer_text(self) -> str:
        """The whole answer decoded at once: what the last verdict judges and the response keeps."""
        if not self.in_answer:
            return ""
        return self.tokenizer.decode(self.tokens[self.answer_start:], skip_special_tokens=True)

    def _raw(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def _close_for_the_model(self) -> None:
        assert self.block is not None
        self.forced = list(self.tokenizer.encode(self.block.closer, add_special_tokens=False))
        self.forced_close = True

    def _start_answer(self) -> None:
        self.phase = ANSWER
        self.answer_start = len(self.tokens)

    def choose(self, proposed: int, ends: bool) -> int | None:
        """The token this row feeds next, given the model's greedy choice; None when the response has ended."""
        if self.forced:
            token = self.forced.pop(0)
            self.tokens.append(token)
            if not self.forced:
                self._start_answer()
            return token
        if self.phase == ANSWER:
            if ends:
                return None
            self.tokens.append(proposed)
            return proposed
        if ends:
            if self.phase == OPENING:
                self._start_answer()
                return None
            self._close_for_the_model()
            return self.choose(proposed, False)
        self.tokens.append(proposed)
        self.spent_before_answer += 1
        assert self.thinking is not None
        if self.phase == OPENING:
            block = opening_block(self._raw(self.tokens), self.thinking.blocks)
            if block is None or (block is UNDECIDED and self.spent_before_answer >= OPENING_ALLOWANCE):
                self.phase = ANSWER
                self.answer_start = 0
            elif block is not UNDECIDED:
                self.phase, self.block, self.block_start = REASONING, block, len(self.tokens)
                self.spent_before_answer = 0
            return proposed
        assert self.block is not None
        tail = self._raw(self.tokens[max(self.block_start, len(self.tokens) - CLOSING_WINDOW):])
        if self.block.closer in tail:
            self._start_answer()
        elif self.spent_before_answer >= self.thinking.max_reasoning_tokens:
            self._close_for_the_model()
        return proposed


def generate_responses(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    verdict: Callable[[str, bool], bool | None],
    check_cancelled: Callable[[], None] | None = None,
    thinking: ThinkingPlan | None = None,
) -> list[Response]:
    """Greedy generation where each sequence stops as soon as ``verdict(answer, finished)`` returns a bool.

    ``max_new_tokens`` bounds the answer; a thinking plan adds its reasoning budget in front of it. Rows whose
    verdict is known are dropped from the batch and from the KV cache. Returns one :class:`Response` per prompt,
    in order.
    """
    tokenizer = loaded.tokenizer
    eos_ids = end_of_sequence_ids(loaded)
    total_steps = max_new_tokens + (reasoning_token_allowance(thinking, tokenizer) if thinking is not None else 0)
    streaming = streaming_backend(tokenizer)
    results: list[Response | None] = [None] * len(texts)
    for offset in range(0, len(texts), batch_size):
        chunk = texts[offset:offset + batch_size]
        batch = encode(tokenizer, chunk, loaded.device)
        attention_mask = batch["attention_mask"]
        position_ids = positions(attention_mask)
        rows = list(range(offset, offset + len(chunk)))
        readers = [ResponseReader(tokenizer, text, thinking, streaming) for text in chunk]
        active = list(range(len(chunk)))
        with torch.inference_mode():
            output = loaded.model(input_ids=batch["input_ids"], attention_mask=attention_mask,
                                  position_ids=position_ids, use_cache=True, logits_to_keep=1)
            cache = getattr(output, "cache", None) or output.past_key_values
            cache_keyword = cache_argument_name(loaded.model)
            for step in range(total_steps):
                if check_cancelled:
                    check_cancelled()
                proposed = output.logits[:, -1, :].argmax(dim=-1).tolist()
                keep: list[int] = []
                fed: list[int] = []
                for slot, local in enumerate(active):
                    reader = readers[local]
                    token = reader.choose(int(proposed[slot]), int(proposed[slot]) in eos_ids)
                    final_step = step == total_steps - 1
                    final_text = None
                    if reader.in_answer:
                        last = token is None or reader.answer_tokens >= max_new_tokens or final_step
                        if last:
                            final_text = reader.final_answer_text()
                        decision = verdict(reader.answer_text() if final_text is None else final_text, last)
                    else:
                        last = token is None or final_step
                        decision = verdict("", True) if last else None
                    if decision is None and last:
                        decision = False
                    if decision is not None:
                        answer = reader.final_answer_text() if final_text is None else final_text
                        results[rows[local]] = Response(answer, bool(decision), reader.tokens, reader.answer_start,
                                                        reader.forced_close)
                    else:
                        keep.append(slot)
                        fed.append(int(token))  # type: ignore[arg-type]
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=attention_mask.device)
                    cache.batch_select_indices(index)
                    attention_mask = attention_mask[index]
                    position_ids = position_ids[index]
                    active = [active[slot] for slot in keep]
                next_tokens = torch.tensor(fed, device=attention_mask.device)
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=1)
                position_ids = position_ids[:, -1:] + 1
                output = loaded.model(input_ids=next_tokens[:, None], attention_mask=attention_mask,
                                      position_ids=position_ids, use_cache=True, **{cache_keyword: cache})
    return [item if item is not None else Response("", True, [], 0) for item in results]


def generate_until_verdict(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    verdict: Callable[[str, bool], bool | None],
    check_cancelled: Callable[[], None] | None = None,
    thinking: ThinkingPlan | None = None,
) -> list[tuple[str, bool]]:
    """(answer, verdict) per prompt, in order: :func:`generate_responses` without the token detail."""
    return [(response.answer, response.refused) for response in
            generate_responses(loaded, texts, batch_size, max_new_tokens, verdict, check_cancelled, thinking)]


def answer_prefixes(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int,
    thinking: ThinkingPlan,
    check_cancelled: Callable[[], None] | None = None,
) -> list[str]:
    """What the model writes before the first answer token that is not whitespace, as raw text per prompt.

    For a thinking model that reasons, that is its reasoning block (closed within the budget) and any whitespace
    after it; appended to the prompt, the next token is where the answer's first-token distribution is read.
    """

    def first_content(answer: str, finished: bool) -> bool | None:
        return False if answer.strip() or finished else None

    tokenizer = loaded.tokenizer
    prefixes = []
    for response in generate_responses(loaded, texts, batch_size, OPENING_ALLOWANCE, first_content,
                                       check_cancelled, thinking):
        end = response.answer_start
        while end < len(response.tokens) and not tokenizer.decode(
                response.tokens[response.answer_start:end + 1], skip_special_tokens=True).strip():
            end += 1
        prefixes.append(tokenizer.decode(response.tokens[:end], skip_special_tokens=False))
    return prefixes


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
