"""Markers for the clear cases, the judge for the rest: most responses cost nothing, the doubtful ones get read.

A response the markers settle beyond doubt (:meth:`MarkerScorer.clear_verdict`: a refusal marker in a
non-complying opening, or a long response with no marker and no topic word) keeps the markers' verdict; only the
others (a topic word in an answer, "Sure! ... but I won't", a very short reply) go to the judge, in one batch.
Generation still stops a clear refusal early, as with the markers alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from heretic_tui.core.abliteration.scoring.base import ProgressCallback, Verdict
from heretic_tui.core.abliteration.scoring.judge import JudgeScorer
from heretic_tui.core.abliteration.scoring.markers import MarkerScorer


class LayeredScorer:
    name = "layered"

    def __init__(self, markers: MarkerScorer, judge: JudgeScorer) -> None:
        self.markers = markers
        self.judge = judge
        self.judged = 0
        """Responses handed to the judge so far (for the log: how much the layering saved)."""

    def early_verdict(self, response: str, finished: bool) -> bool | None:
        return self.markers.early_verdict(response, finished)

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              progress: ProgressCallback | None = None) -> list[Verdict]:
        verdicts: list[Verdict | None] = [self.markers.clear_verdict(response) for response in responses]
        undecided = [index for index, verdict in enumerate(verdicts) if verdict is None]
        clear = len(responses) - len(undecided)
        if progress is not None:
            progress(clear)
        judged = self.judge.score([prompts[index] for index in undecided], [responses[index] for index in undecided],
                                  None if progress is None else (lambda done: progress(clear + done)))
        for index, verdict in zip(undecided, judged):
            verdicts[index] = verdict
        self.judged += len(undecided)
        return [verdict for verdict in verdicts if verdict is not None]
