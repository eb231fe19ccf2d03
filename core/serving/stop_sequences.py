"""Cutting a streamed answer at the first stop sequence without ever sending text that a stop sequence would cut.

Tokens do not line up with stop sequences (one token may end with the start of a stop sequence, the next finish it),
so the text is matched, not the token ids: whatever could still be the beginning of a stop sequence is held back
until the next piece decides it. Hand-written because it is the few lines every engine's streaming needs in the same
way, and the engines' own stop handling differs (vLLM's is text-based, transformers' ``stop_strings`` needs the
tokenizer passed through generate and cannot tell us where in a piece it stopped).
"""

from __future__ import annotations

from collections.abc import Sequence


class StopSequenceCutter:
    """Feed it the answer piece by piece; it returns the text that is safe to send and notices the first stop."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [item for item in stop if item]
        self.longest = max((len(item) for item in self.stop), default=0)
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be sent now; after a stop sequence nothing more is ever returned."""
        if self.stopped:
            return ""
        if not self.stop:
            return piece
        self.pending += piece
        first = min((index for index in (self.pending.find(item) for item in self.stop) if index >= 0), default=-1)
        if first >= 0:
            self.stopped = True
            text, self.pending = self.pending[:first], ""
            return text
        keep = self._held_back()
        text = self.pending[:len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return text

    def finish(self) -> str:
        """What was held back, once the answer has ended without a stop sequence."""
        text, self.pending = ("" if self.stopped else self.pending), ""
        return text

    def _held_back(self) -> int:
        """Length of the longest tail of the pending text that begins some stop sequence."""
        for length in range(min(self.longest - 1, len(self.pending)), 0, -1):
            tail = self.pending[-length:]
            if any(item.startswith(tail) for item in self.stop):
                return length
        return 0
