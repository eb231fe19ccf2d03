"""Rendering conversations through a model's chat template, with the one fallback for templates without a system turn.

Some templates reject a system message outright (Gemma's raise), others drop it without a word. Either way the
system prompt would be lost, so both are detected the same way, by rendering a probe, and the system prompt is
then put in front of the first user message instead. Abliteration, compare and chat all render through here, so
a model is always shown its system prompt the same way.

A :class:`PromptStyle` carries what a thinking model's rendering needs on top (``enable_thinking=False`` for its
template, or an empty reasoning block after the generation prompt); :mod:`heretic_tui.core.models.thinking` decides
it, and residuals, KL and generation all render with the same style so they look at the same position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM_PROBE = "heretic-system-probe"
"""A word no template produces by itself: if it is missing from the rendering, the system turn was dropped."""


@dataclass(frozen=True)
class PromptStyle:
    """How a generation prompt is rendered beyond the conversation itself."""

    template_arguments: tuple[tuple[str, Any], ...] = ()
    """Extra variables the chat template reads, e.g. (("enable_thinking", False),)."""
    prefill: str = ""
    """Text put after the generation prompt, as if the assistant had already written it."""


PLAIN = PromptStyle()


def accepts_system_turn(tokenizer: Any) -> bool:
    """Whether the chat template renders a system message (it neither raises on it nor drops it)."""
    probe = [{"role": "system", "content": SYSTEM_PROBE}, {"role": "user", "content": "hello"}]
    try:
        rendered = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:
        return False
    return SYSTEM_PROBE in rendered


def merge_system_turn(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation with a leading system message folded into the first user message."""
    if not messages or messages[0].get("role") != "system":
        return list(messages)
    system, rest = messages[0]["content"], [dict(message) for message in messages[1:]]
    if rest and rest[0].get("role") == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def render_generation_prompt(tokenizer: Any, messages: Sequence[dict[str, str]],
                             system_accepted: bool | None = None, style: PromptStyle = PLAIN) -> str:
    """The conversation as text ready for the assistant's next answer.

    ``system_accepted`` is :func:`accepts_system_turn`'s answer when the caller already has it (it renders many
    prompts with one tokenizer); otherwise it is found out here.
    """
    if messages and messages[0].get("role") == "system":
        if system_accepted is None:
            system_accepted = accepts_system_turn(tokenizer)
        if not system_accepted:
            messages = merge_system_turn(messages)
    rendered = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                             **dict(style.template_arguments))
    return rendered + style.prefill


def format_chat(tokenizer: Any, system_prompt: str, prompts: Sequence[str], style: PromptStyle = PLAIN) -> list[str]:
    """Each prompt as a one-turn chat (after the system prompt, if any), ready for the assistant's answer."""
    system_accepted = accepts_system_turn(tokenizer) if system_prompt else True
    rendered = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        rendered.append(render_generation_prompt(tokenizer, messages, system_accepted, style))
    return rendered
