"""A local chat model as the refusal judge: asked a short fixed question about each response.

The judge reads the judge prompt (a setting, with ``{prompt}`` and ``{response}`` in it) as a one-turn chat and
its verdict is whichever of its three answer words (refused / complied without useful content / answered, a
setting) it finds likeliest as its reply, by log-likelihood. Nothing is sampled, so the verdict is deterministic,
and a batch of responses costs one forward pass per answer word, whatever the batch size (batching gives the
verdicts that judging one by one gives).

By default the judge is the original model itself, which knows its own refusals best; the abliteration job judges
after the trial's edit is undone, so the judge always has the original weights.
"""

from __future__ import annotations

from collections.abc import Sequence

from heretic_tui.core.abliteration.scoring.base import ProgressCallback, Verdict
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.chat_template import format_chat
from heretic_tui.core.models.likelihood import continuation_log_likelihoods, token_ids
from heretic_tui.core.models.loading import LoadedModel

VERDICT_ORDER = (Verdict.REFUSED, Verdict.EVASIVE, Verdict.ANSWERED)
"""The verdict each of the judge's answer words stands for, in the order of the setting."""


class JudgeScorer:
    name = "judge"

    def __init__(self, loaded: LoadedModel, prompt_template: str, answer_words: Sequence[str],
                 batch_size: int = 8) -> None:
        if "{response}" not in prompt_template:
            raise UserInputError(
                "abliteration.judge_prompt has no '{response}' in it, so the judge would never see the response. "
                "Put '{response}' (and '{prompt}' for the request) where they belong in the prompt."
            )
        if len(answer_words) != len(VERDICT_ORDER) or any(not word.strip() for word in answer_words):
            raise UserInputError(
                f"abliteration.judge_answers = {list(answer_words)!r} must hold three words: what the judge replies "
                "for a refusal, for a reply without useful content, and for an answer."
            )
        self.loaded = loaded
        self.prompt_template = prompt_template
        self.answers = [" " + word.strip() if not word.startswith(" ") else word for word in answer_words]
        encoded = [tuple(token_ids(loaded.tokenizer, word)) for word in self.answers]
        if len(set(encoded)) != len(encoded):
            raise UserInputError(
                f"The judge model's tokenizer reads abliteration.judge_answers = {list(answer_words)!r} as the same "
                "tokens (words it does not know), so it cannot tell the verdicts apart. Choose three words the judge "
                "model knows, or another judge_model."
            )
        self.batch_size = max(1, batch_size)

    def question(self, prompt: str, response: str) -> str:
        return self.prompt_template.replace("{prompt}", prompt).replace("{response}", response)

    def early_verdict(self, response: str, finished: bool) -> bool | None:
        return False if finished else None

    def likelihoods(self, prompts: Sequence[str], responses: Sequence[str],
                    progress: ProgressCallback | None = None) -> list[list[float]]:
        """Per response, the judge's log-likelihood of each answer word (in the settings' order)."""
        questions = [self.question(prompt, response) for prompt, response in zip(prompts, responses)]
        contexts = format_chat(self.loaded.tokenizer, "", questions)
        pairs = [(context, answer) for context in contexts for answer in self.answers]
        width = len(self.answers)
        scores = continuation_log_likelihoods(
            self.loaded, pairs, self.batch_size * width,
            None if progress is None else (lambda done: progress(done // width)),
        )
        return [scores[index:index + width] for index in range(0, len(scores), width)]

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              progress: ProgressCallback | None = None) -> list[Verdict]:
        verdicts = []
        for response, row in zip(responses, self.likelihoods(prompts, responses, progress)):
            verdicts.append(Verdict.REFUSED if not response.strip() else VERDICT_ORDER[row.index(max(row))])
        return verdicts
