"""Chat models that reason before they answer: finding their reasoning block and judging only the answer.

Thinking models (Qwen3, DeepSeek-R1, Magistral, gpt-oss, ...) write a reasoning block (``<think> ... </think>``)
before their answer. Left alone, the block spoils both measurements of a trial: refusal markers match words of the
reasoning ("this is illegal, but ...") instead of the answer, and the first generated token is the block's opener,
whose distribution hardly moves whatever the ablation does, so first-token KL reads about zero for every trial.
``abliteration.thinking`` picks one of three handlings:

- ``disable``: the prompt is rendered so that the model answers at once: with ``enable_thinking=False`` where the
  chat template reads that switch (the template then writes an empty block itself), otherwise with an empty block
  put after the generation prompt. The first generated token is the answer's, so first-token KL is measured there.
- ``skip``: the model reasons as it does in use. Generation recognizes the block, gives it its own token budget
  (``abliteration.thinking_max_tokens``; when the budget runs out, or the model tries to stop inside the block, the
  closing marker is written for it) and the scorer sees only what follows. First-token KL is measured at the answer
  as well: the unmodified model's reasoning for each harmless prompt is generated once and put in front of the
  answer for every trial, so every trial is compared with the original at the same position.
- ``off``: no handling, for models that do not reason.

``auto`` picks ``disable`` where the template has the switch, ``skip`` where the template writes one of the markers
of ``abliteration.thinking_markers``, and ``off`` otherwise. Whatever is chosen, residuals, KL and generation render
prompts the same way (:class:`~heretic_tui.core.models.chat_template.PromptStyle`), so they look at one position.

The marker logic is hand-written text matching because transformers has no notion of a reasoning block; it works on
decoded text (special tokens kept), so a marker that is one added token and a marker spelled in several tokens are
found the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.chat_template import PLAIN, PromptStyle
from heretic_tui.core.settings import AbliterationSettings

MARKER_SEPARATOR = "..."
"""Separates the opening and the closing marker in an entry of ``abliteration.thinking_markers``."""

HANDLINGS = ("disable", "skip", "off")

PROBE_MESSAGES = [{"role": "user", "content": "heretic-thinking-probe"}]

OPENING_ALLOWANCE = 8
"""Tokens a response may spend (leading whitespace, the opening marker itself) before it is known whether it
reasons; they count toward its length limit, not toward the reasoning budget."""


@dataclass(frozen=True)
class ReasoningBlock:
    """The markers that open and close one kind of reasoning block."""

    opener: str
    closer: str

    def __str__(self) -> str:
        return f"{self.opener}{MARKER_SEPARATOR}{self.closer}"


UNDECIDED = ReasoningBlock("", "")
"""What :func:`opening_block` answers while the text so far could still become an opening marker."""


def parse_markers(entries: Sequence[str]) -> tuple[ReasoningBlock, ...]:
    """The blocks of ``abliteration.thinking_markers``; an entry without exactly one separator is bad input."""
    blocks = []
    for entry in entries:
        parts = entry.split(MARKER_SEPARATOR)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise UserInputError(
                f"abliteration.thinking_markers: the entry {entry!r} is not an opening and a closing marker joined by "
                f"'{MARKER_SEPARATOR}', e.g. '<think>{MARKER_SEPARATOR}</think>'. Fix the entry or remove it."
            )
        blocks.append(ReasoningBlock(parts[0], parts[1]))
    return tuple(blocks)


def opening_block(text: str, blocks: Sequence[ReasoningBlock]) -> ReasoningBlock | None:
    """The block that generated ``text`` opens, :data:`UNDECIDED` while it may still open one, None for an answer."""
    start = text.lstrip()
    for block in blocks:
        if start.startswith(block.opener):
            return block
    if any(block.opener.startswith(start) for block in blocks):
        return UNDECIDED
    return None


def block_left_open(prompt: str, blocks: Sequence[ReasoningBlock]) -> ReasoningBlock | None:
    """The block a rendered prompt opens without closing (templates that start the reasoning for the model)."""
    for block in blocks:
        opened = prompt.rfind(block.opener)
        if opened >= 0 and prompt.find(block.closer, opened + len(block.opener)) < 0:
            return block
    return None


def template_source(tokenizer: Any) -> str:
    """The chat template's Jinja text (every named template of a tokenizer that has several)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        return "\n".join(str(value) for value in template.values())
    return str(template)


def _probe(tokenizer: Any, **arguments: Any) -> str | None:
    try:
        return tokenizer.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True, **arguments)
    except Exception:
        return None


def reads_enable_thinking(tokenizer: Any) -> bool:
    """Whether the template renders differently with ``enable_thinking=False`` (it reads the switch)."""
    if "enable_thinking" not in template_source(tokenizer):
        return False
    switched_off = _probe(tokenizer, enable_thinking=False)
    return switched_off is not None and switched_off != _probe(tokenizer, enable_thinking=True)


def blocks_in_template(tokenizer: Any, blocks: Sequence[ReasoningBlock]) -> tuple[ReasoningBlock, ...]:
    """The blocks whose opening or closing marker the chat template (or its generation prompt) contains."""
    text = template_source(tokenizer) + (_probe(tokenizer) or "")
    return tuple(block for block in blocks if block.opener in text or block.closer in text)


@dataclass(frozen=True)
class ThinkingPlan:
    """How a model's reasoning block is handled while its trials are measured, and why."""

    requested: str
    """The setting: auto, disable, skip or off."""
    handling: str
    """What is done: disable, skip or off."""
    reason: str
    """One sentence for the log and the report."""
    blocks: tuple[ReasoningBlock, ...] = ()
    """The blocks generation recognizes (empty when handling is off)."""
    style: PromptStyle = PLAIN
    max_reasoning_tokens: int = 0

    @property
    def active(self) -> bool:
        return self.handling != "off"

    def describe(self) -> str:
        return f"thinking: {self.handling} ({self.reason})"

    def report(self) -> dict[str, Any]:
        """What report.json records about it."""
        return {
            "requested": self.requested,
            "handling": self.handling,
            "reason": self.reason,
            "markers": [str(block) for block in self.blocks],
            "template_arguments": dict(self.style.template_arguments),
            "prefill": self.style.prefill,
            "max_reasoning_tokens": self.max_reasoning_tokens if self.active else 0,
        }


NO_HANDLING = ThinkingPlan("off", "off", "no reasoning block is handled")


def plan_thinking(tokenizer: Any, settings: AbliterationSettings, model_name: str = "the model") -> ThinkingPlan:
    """Decide the handling for this tokenizer's chat template; an explicit choice it cannot honour is bad input."""
    requested = settings.thinking
    if requested == "off":
        return ThinkingPlan(requested, "off", "abliteration.thinking is 'off'")
    blocks = parse_markers(settings.thinking_markers)
    switch = reads_enable_thinking(tokenizer)
    mentioned = blocks_in_template(tokenizer, blocks)
    budget = settings.thinking_max_tokens
    handling = requested
    if requested == "auto":
        if switch:
            handling = "disable"
        elif mentioned:
            handling = "skip"
        else:
            return ThinkingPlan(requested, "off", "the chat template has no enable_thinking switch and writes none "
                                                  "of abliteration.thinking_markers")
    if handling == "skip":
        found = f"the chat template writes {', '.join(str(block) for block in mentioned)}" if mentioned else (
            "the chat template writes none of the markers; any of them that the model writes is skipped")
        return ThinkingPlan(requested, "skip", f"{found}; the scorer sees the answer after the reasoning, which "
                                               f"gets up to {budget} tokens", blocks, PLAIN, budget)
    if switch:
        return ThinkingPlan(requested, "disable", "the chat template reads enable_thinking; prompts are rendered "
                                                  "with enable_thinking=False", blocks,
                            PromptStyle(template_arguments=(("enable_thinking", False),)), budget)
    opened = block_left_open(_probe(tokenizer) or "", blocks)
    if opened is not None:
        prefill = opened.closer
    elif mentioned:
        opened = mentioned[0]
        prefill = opened.opener + opened.closer
    else:
        raise UserInputError(
            f"abliteration.thinking = 'disable', but the chat template of {model_name} has no enable_thinking switch "
            f"and writes none of abliteration.thinking_markers ({', '.join(str(block) for block in blocks)}), so "
            "there is no reasoning block to disable. Set abliteration.thinking to 'auto' or 'off', or add the "
            "model's markers to abliteration.thinking_markers."
        )
    return ThinkingPlan(requested, "disable", f"the chat template has no enable_thinking switch; an empty "
                                              f"{opened} block is put after the generation prompt", blocks,
                        PromptStyle(prefill=prefill), budget)


def reasoning_token_allowance(plan: ThinkingPlan, tokenizer: Any) -> int:
    """Tokens a response may spend before its answer starts: the reasoning budget and the closing marker."""
    if not plan.active:
        return 0
    closers = [len(tokenizer.encode(block.closer, add_special_tokens=False)) for block in plan.blocks]
    return plan.max_reasoning_tokens + max(closers, default=0) + OPENING_ALLOWANCE
