"""The person's labels folded into the dashboard's trials: counts, front and best trial as report.json has them.

Trial events carry the scorer's counts; once the run folder holds labels, each finished trial is recounted from its
stored responses (through the core), the front is recomputed and a finished run's chosen trial is the one its
recounted report.json names. A trial is recounted when it is new or when the
labels file changed, so a redraw costs a stat call.
"""

from __future__ import annotations

from pathlib import Path

from heretic_tui.core.api import TrialCounts, chosen_trial, pareto_of, relabelled_counts
from heretic_tui.tui.run_state import RunState

LABELS_FILE = "labels.json"


class HumanLabels:
    def __init__(self, run_path: Path) -> None:
        self.run_path = run_path
        self.labels_changed: float | None = None
        self.counts: dict[int, TrialCounts] = {}

    def apply(self, state: RunState) -> bool:
        """Recount ``state``'s trials with the labels; True when a count or the front changed."""
        path = self.run_path / LABELS_FILE
        if not path.is_file():
            return False
        changed_at = path.stat().st_mtime
        finished = [row.number for row in state.finished_trials]
        if changed_at != self.labels_changed:
            self.counts, self.labels_changed = {}, changed_at
        missing = [number for number in finished if number not in self.counts]
        if missing:
            self.counts.update(relabelled_counts(self.run_path, missing))
        changed = bool(missing)
        for number, counts in self.counts.items():
            row = state.trials.get(number)
            if row is not None and row.refusals != counts.refusals:
                row.refusals = counts.refusals
                changed = True
        if changed:
            finished = state.finished_trials
            state.pareto = pareto_of([(row.number, row.kl or 0.0, row.refusals or 0) for row in finished],
                                     {row.number: row.capability for row in finished if row.capability is not None})
            if "chosen_trial" in state.summary:
                state.summary["chosen_trial"] = chosen_trial(self.run_path)
        return changed
