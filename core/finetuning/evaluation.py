"""Evidence that training worked: validation loss before and after, a knowledge test, a chat-template smoke test.

Validation loss is measured by the trainer itself on the held-out examples. The knowledge test asks a few prompts
taken from the training data and shows the answers of the model before and after next to the answer the data holds,
with a word-overlap score, because "loss went down" means little to someone who wanted the model to know their
documents. The smoke test reloads what was written to disk (the merged folder, or the base model plus the saved
adapter) and checks that its tokenizer renders the chat template exactly as before and that it answers a prompt
the same way the model in memory did: the "garbled after merge" failure (a lost template, a tokenizer mismatch, a
merge in the wrong precision) shows up there and not in the loss.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from heretic_tui.core.finetuning.examples import example_prompt
from heretic_tui.core.finetuning.knowledge import KnowledgeQuestion, answer_matches

SMOKE_AGREEMENT = 0.6
"""Word-overlap with the in-memory answer above which a reloaded model counts as answering the same way (greedy
decoding can drift by a token after a merge in 16-bit precision without anything being wrong)."""


LOSS_CHANGE_TOLERANCE = 1e-3
"""Relative change of the validation loss below which training counts as having changed nothing: a run at learning
rate 0 gives exactly the same loss, and a change of a tenth of a percent is noise of the data order, not learning."""


def validation_loss_problem(before: float | None, after: float | None) -> str | None:
    """A sentence when the validation loss shows the run learned nothing (or got worse); None when it improved.

    Without a validation set (``finetune.validation_fraction`` 0, or too little data) there is nothing to judge.
    """
    if before is None or after is None:
        return None
    if not (math.isfinite(before) and math.isfinite(after)):
        return (f"The validation loss is not a finite number ({before:.4g} before training, {after:.4g} after): the "
                "training diverged. Lower finetune.learning_rate and train again.")
    change = before - after
    if abs(change) <= LOSS_CHANGE_TOLERANCE * max(1.0, abs(before)):
        return (f"The validation loss did not move ({before:.4g} before training, {after:.4g} after), so the adapter "
                "learned nothing measurable. Train for more steps, raise finetune.learning_rate, or add data "
                "(and see the plan's warnings, if any).")
    if change < 0:
        return (f"The validation loss rose from {before:.4g} to {after:.4g}: the adapter is worse than the base model "
                "on held-out data. Lower finetune.learning_rate, train for fewer steps, or add data.")
    return None


@dataclass
class KnowledgeItem:
    """One knowledge-test prompt; ``judged`` items (questions with a short answer) are scored right or wrong."""

    prompt: list[dict[str, str]] | str
    expected: str
    before: str = ""
    after: str = ""
    aliases: tuple[str, ...] = ()
    judged: bool = False

    @property
    def correct_before(self) -> bool | None:
        return answer_matches(self.before, self.expected, self.aliases) if self.judged else None

    @property
    def correct_after(self) -> bool | None:
        return answer_matches(self.after, self.expected, self.aliases) if self.judged else None

    @property
    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        return next((turn["content"] for turn in reversed(self.prompt) if turn["role"] == "user"), "")


def question_items(questions: Sequence[KnowledgeQuestion]) -> list[KnowledgeItem]:
    """Questions (from the user's file, or held out of training) asked through the chat template, judged."""
    return [KnowledgeItem([{"role": "user", "content": question.question}], question.answer,
                          aliases=tuple(question.aliases), judged=True) for question in questions]


def knowledge_items(examples: Sequence[dict[str, Any]], count: int, seed: int) -> list[KnowledgeItem]:
    """A seeded sample of training examples as prompts with the answer the data holds (when there are no questions
    to ask: text mode, or continuation pairs); these are compared by word overlap, not judged."""
    chosen = random.Random(seed).sample(range(len(examples)), min(count, len(examples)))
    items = []
    for index in sorted(chosen):
        prompt, expected = example_prompt(examples[index])
        items.append(KnowledgeItem(prompt, expected))
    return items


def render_prompt(tokenizer: Any, prompt: list[dict[str, str]] | str) -> tuple[str, bool]:
    """The text to generate from, and whether the tokenizer should add its special tokens (plain text only)."""
    if isinstance(prompt, str):
        return prompt, True
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True), False


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[list[dict[str, str]] | str],
                     max_new_tokens: int) -> list[str]:
    """Greedy answers: chat prompts batched, plain-text ones one at a time (those are few)."""
    if prompts and all(not isinstance(prompt, str) for prompt in prompts):
        return chat_replies(model, tokenizer, list(prompts), max_new_tokens)  # type: ignore[arg-type]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers = []
    try:
        for prompt in prompts:
            text, special = render_prompt(tokenizer, prompt)
            batch = tokenizer(text, return_tensors="pt", add_special_tokens=special).to(device)
            with torch.inference_mode():
                output = model.generate(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[0, batch["input_ids"].shape[1]:]
            answers.append(tokenizer.decode(new_tokens, skip_special_tokens=True).strip())
    finally:
        if was_training:
            model.train()
    return answers


def similarity(answer: str, expected: str) -> float:
    """Word-level overlap in [0, 1] (difflib's ratio), enough to see "it now says what the document says"."""
    if not answer.strip() and not expected.strip():
        return 1.0
    return difflib.SequenceMatcher(None, answer.lower().split(), expected.lower().split()).ratio()


def knowledge_scores(items: Sequence[KnowledgeItem]) -> dict[str, float | None]:
    """Word-overlap scores, and for judged questions the share answered right, before and after training."""
    if not items:
        return {"score_before": None, "score_after": None, "accuracy_before": None, "accuracy_after": None}
    judged = [item for item in items if item.judged]
    return {
        "score_before": round(sum(similarity(item.before, item.expected) for item in items) / len(items), 4),
        "score_after": round(sum(similarity(item.after, item.expected) for item in items) / len(items), 4),
        "accuracy_before": round(sum(bool(item.correct_before) for item in judged) / len(judged), 4) if judged
        else None,
        "accuracy_after": round(sum(bool(item.correct_after) for item in judged) / len(judged), 4) if judged
        else None,
    }


def knowledge_report(items: Sequence[KnowledgeItem]) -> list[dict[str, Any]]:
    """Every prompt with the expected answer and both replies side by side (and whether each was right)."""
    return [{**asdict(item), "aliases": list(item.aliases), "prompt": item.prompt_text,
             "correct_before": item.correct_before, "correct_after": item.correct_after} for item in items]


def smoke_prompt(items: Sequence[KnowledgeItem]) -> list[dict[str, str]]:
    """A chat prompt for the template smoke test: the first knowledge prompt as a user turn."""
    content = items[0].prompt_text if items else "Hello! Who are you?"
    return [{"role": "user", "content": content or "Hello! Who are you?"}]


def template_renders_the_same(reference: Any, reloaded: Any, messages: list[dict[str, str]]) -> bool:
    if not getattr(reloaded, "chat_template", None):
        return False
    conversation = messages + [{"role": "assistant", "content": "Yes."}]
    return all(
        reference.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation)
        == reloaded.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation)
        for turns, generation in ((messages, True), (conversation, False))
    )


def smoke_test(model: Any, tokenizer: Any, reference_tokenizer: Any, messages: list[dict[str, str]],
               reference_answer: str, max_new_tokens: int) -> dict[str, Any]:
    """Check a reloaded model and tokenizer against the in-memory ones; every check is reported, not only the verdict."""
    template_ok = template_renders_the_same(reference_tokenizer, tokenizer, messages)
    text, _ = render_prompt(tokenizer, messages)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(next(model.parameters()).device)
    with torch.inference_mode():
        logits = model(**batch).logits[:, -1, :]
    finite = bool(torch.isfinite(logits).all())
    answer = generate_answers(model, tokenizer, [messages], max_new_tokens)[0] if finite else ""
    agreement = similarity(answer, reference_answer)
    return {
        "passed": template_ok and finite and bool(answer or not reference_answer) and agreement >= SMOKE_AGREEMENT,
        "chat_template_identical": template_ok,
        "finite_logits": finite,
        "answer": answer,
        "reference_answer": reference_answer,
        "agreement": round(agreement, 4),
    }


def chat_replies(model: Any, tokenizer: Any, prompts: Sequence[list[dict[str, str]]], max_new_tokens: int,
                 batch_size: int = 16) -> list[str]:
    """Greedy replies to many chat prompts, a batch at a time with left padding (deterministic, and a dozen times
    faster than one prompt at a time on a CPU)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [render_prompt(tokenizer, prompt)[0] for prompt in prompts[start:start + batch_size]]
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.inference_mode():
                output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
            for row in output[:, batch["input_ids"].shape[1]:]:
                replies.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return replies
