"""One line per run for the home and runs screens, read from each run's folder.

The status is the core's (``RunDirectory.status``, with ``damage()`` naming the file of a damaged run); the figures
(trials done, best trial) come from folding the journal with the dashboard's own :class:`RunState`, so a list and
the dashboard it opens agree. A damaged run is listed like any other, with its damage as its problem, so one bad
file never hides the other runs. Reading is done in a thread worker: a runs folder on a network disk can be slow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual.timer import Timer
from textual.widget import Widget

from heretic_tui.core.api import STATUS_DAMAGED, STATUS_MISSING, STATUS_RUNNING, RunDirectory, RunRecord, list_runs
from heretic_tui.tui.run_state import RunState, TrialRow

LIVE_REFRESH_SECONDS = 3.0
"""How often a list of runs is read again while a run in it is live."""


@dataclass(frozen=True)
class RunSummary:
    path: Path
    kind: str
    model: str
    created: float
    status: str
    trials_done: int
    trial_target: int
    baseline_refusals: int | None
    baseline_total: int | None
    best: TrialRow | None
    error_message: str
    """What went wrong: the run's error, or for a damaged run the sentence naming the damaged file."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_live(self) -> bool:
        return self.status == STATUS_RUNNING


def summarize_run(run: RunDirectory) -> RunSummary:
    job = run.read_job()
    kind = str(job.get("kind") or "?")
    state = RunState.from_events(run.read_events())
    damage = run.damage()
    created = job.get("created")
    return RunSummary(
        path=run.path,
        kind=kind,
        model=str(job.get("model") or state.model or "?"),
        created=float(created) if isinstance(created, (int, float)) else 0.0,
        status=STATUS_DAMAGED if damage is not None else run.status(),
        trials_done=len(state.finished_trials),
        trial_target=state.trial_total,
        baseline_refusals=state.baseline_refusals,
        baseline_total=state.baseline_total,
        best=state.best_trial(),
        error_message=damage or state.error_message,
    )


def missing_runs(records: list[RunRecord], known: set[Path]) -> list[RunSummary]:
    """Runs the registry remembers whose folder is gone (moved or deleted), so they show as missing, not vanish."""
    return [
        RunSummary(path=record.path, kind=record.kind, model=record.model or "?", created=record.created,
                   status=STATUS_MISSING, trials_done=0, trial_target=0, baseline_refusals=None, baseline_total=None,
                   best=None, error_message="The run folder is gone (moved or deleted); the registry still lists it.")
        for record in records
        if record.status == STATUS_MISSING and record.path not in known
    ]


def summarize_runs(root: Path, limit: int | None = None) -> list[RunSummary]:
    """Newest first; a folder that cannot be read at all (permissions) is skipped, not fatal."""
    summaries = []
    for run in list_runs(root)[:limit]:
        try:
            summaries.append(summarize_run(run))
        except OSError:
            continue
    return summaries


def keep_refreshing(owner: Widget, timer: Timer | None, live: bool, refresh: Callable[[], None]) -> Timer | None:
    """The timer that reads a runs list again while one of its runs is live: started when one is, stopped when
    none is any more (a finished list is not read again until something changes it)."""
    if live and timer is None:
        return owner.set_interval(LIVE_REFRESH_SECONDS, refresh)
    if not live and timer is not None:
        timer.stop()
        return None
    return timer
