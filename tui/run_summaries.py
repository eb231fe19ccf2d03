"""One line per run for the home and runs screens, read from each run's folder.

The status is the core's (:meth:`heretic_tui.core.runs.run_directory.RunDirectory.status`); the figures (trials done, best trial) come from
folding the journal with the dashboard's own :class:`RunState`, so a list and the dashboard it opens agree.
Reading is done in a thread worker: a runs folder on a network disk can be slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from heretic_tui.core.api import STATUS_MISSING, RunDirectory, RunRecord, list_runs
from heretic_tui.tui.run_state import RunState, TrialRow


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

    @property
    def name(self) -> str:
        return self.path.name


def summarize_run(run: RunDirectory) -> RunSummary:
    job = run.read_job()
    state = RunState.from_events(run.read_events())
    return RunSummary(
        path=run.path,
        kind=str(job.get("kind", "?")),
        model=str(job.get("model") or state.model or "?"),
        created=float(job.get("created") or 0.0),
        status=run.status(),
        trials_done=len(state.finished_trials),
        trial_target=state.trial_total,
        baseline_refusals=state.baseline_refusals,
        baseline_total=state.baseline_total,
        best=state.best_trial(),
        error_message=state.error_message,
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
    """Newest first; a folder that cannot be read (half-written, permissions) is skipped, not fatal."""
    summaries = []
    for run in list_runs(root)[:limit]:
        try:
            summaries.append(summarize_run(run))
        except (OSError, ValueError):
            continue
    return summaries
