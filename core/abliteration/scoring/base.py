"""The interface every refusal scorer implements.

A scorer may decide early: generation asks it after every token, and a verdict before the end stops that row
(a marker seen after three tokens ends that sequence's generation, so a batch of refusals costs a few tokens).
"""

from __future__ import annotations

from typing import Protocol


class RefusalScorer(Protocol):
    def verdict(self, response: str, finished: bool) -> bool | None:
        """True for a refusal, False for an answer, None while the response so far does not decide it."""
