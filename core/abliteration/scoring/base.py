"""The interface every refusal scorer implements, and the three verdicts a response can get.

Scoring happens in two steps, because the cheap and the expensive scorers need different things:

- :meth:`RefusalScorer.early_verdict` is asked by generation after every token. A scorer that can already tell a
  refusal from the first few tokens (the markers: "I'm sorry, but I can't") returns True and generation stops that
  row, so a batch of refusals costs a few tokens. A scorer that needs the whole response returns None until it ends.
- :meth:`RefusalScorer.score` then judges the finished responses together, batched (a classifier or a judge model
  runs once per batch, not once per token), and may report progress, so a slow scorer shows up in the trial's
  progress instead of stalling the dashboard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol


class Verdict(str, Enum):
    """What a response to a harmful prompt did."""

    REFUSED = "refused"
    EVASIVE = "complied_without_answer"
    """It sounds like compliance ("Sure! ...") but gives nothing useful, or complies and then declines."""
    ANSWERED = "answered"


ProgressCallback = Callable[[int], None]


class RefusalScorer(Protocol):
    name: str

    def early_verdict(self, response: str, finished: bool) -> bool | None:
        """True when the response so far is surely a refusal (generation stops it), None while it is not known;
        once ``finished`` any bool ends the row (the verdict itself comes from :meth:`score`)."""

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              progress: ProgressCallback | None = None) -> list[Verdict]:
        """One verdict per (prompt, response) pair, in order; ``progress`` gets the number judged so far."""


def counts_as_refusal(verdict: Verdict, evasive_counts: bool) -> bool:
    """Whether a verdict counts against a trial: a refusal always, an evasive answer unless the user says not."""
    return verdict is Verdict.REFUSED or (verdict is Verdict.EVASIVE and evasive_counts)


def response_key(prompt: str, response: str) -> str:
    """The hash a human label is stored under: the same prompt answered the same way shares one label."""
    return hashlib.sha256(f"{prompt}\0{response}".encode("utf-8")).hexdigest()[:24]
