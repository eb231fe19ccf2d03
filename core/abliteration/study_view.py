"""The trials of a study several workers share, read from its storage for the dashboard and ``attach``.

Each worker's events.jsonl holds only its own trials; the study in the database holds everyone's. A screen that
follows one worker's journal reads this view every few seconds to show the trials of every worker (who ran which,
and the ones in flight), and the Pareto front over all of them. Workers coming and going change nothing here: the
storage is the one record, and a reader keeps its connection between reads (Optuna's cached storage then fetches
only the trials that changed).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heretic_tui.core.abliteration.study_storage import location_of_run


@dataclass(frozen=True)
class StudyTrial:
    """One complete or running trial of the shared study."""

    number: int
    worker: str
    running: bool
    refusals: int | None = None
    kl: float | None = None
    seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    """When the trial started (seconds since the epoch, the database's clock)."""
    capability: float | None = None
    """Multiple-choice accuracy, in a study with the capability objective."""


@dataclass(frozen=True)
class WorkerSpeed:
    """How one worker of the study is doing: the trials it completed, their median time, whether one is in flight."""

    worker: str
    completed: int
    median_seconds: float | None
    running: bool

    def describe(self) -> str:
        median = f", {self.median_seconds:.1f}s per trial" if self.median_seconds else ""
        return f"{self.worker or 'unnamed worker'}: {self.completed} trials{median}" + (", one running" if self.running
                                                                                          else "")


@dataclass(frozen=True)
class StudySnapshot:
    trials: list[StudyTrial]
    pareto: list[int]

    @property
    def workers(self) -> list[WorkerSpeed]:
        """Every worker that ran or runs a trial of the study, by name."""
        grouped: dict[str, list[StudyTrial]] = {}
        for trial in self.trials:
            grouped.setdefault(trial.worker, []).append(trial)
        speeds = []
        for worker, trials in sorted(grouped.items()):
            durations = [trial.seconds for trial in trials if not trial.running and trial.seconds]
            speeds.append(WorkerSpeed(worker, sum(1 for trial in trials if not trial.running),
                                      statistics.median(durations) if durations else None,
                                      any(trial.running for trial in trials)))
        return speeds


class SharedStudyReader:
    """Reads a shared study's trials again and again for one screen; see the module doc."""

    def __init__(self, run_path: Path) -> None:
        self.run_path = run_path
        self.location = location_of_run(run_path)
        self._study: Any = None

    @property
    def shared(self) -> bool:
        return self.location.url is not None

    def read(self) -> StudySnapshot:
        """Every complete and running trial; a database that fails is a StorageError paragraph."""
        from optuna.trial import TrialState

        from heretic_tui.core.abliteration.study import pareto_front, read_study, trial_result
        from heretic_tui.core.abliteration.study_storage import database_errors
        from heretic_tui.core.abliteration.workers import WORKER_ATTRIBUTE

        with database_errors(self.location, "read the study's trials"):
            if self._study is None:
                self._study = read_study(self.run_path)
            stored = self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        trials, results = [], []
        for trial in stored:
            started = trial.datetime_start.timestamp() if trial.datetime_start else None
            if trial.state == TrialState.RUNNING:
                trials.append(StudyTrial(trial.number, str(trial.user_attrs.get(WORKER_ATTRIBUTE, "")), True,
                                         started=started))
                continue
            result = trial_result(trial)
            results.append(result)
            trials.append(StudyTrial(result.number, result.worker, False, result.refusals, result.kl, result.seconds,
                                     result.params, started, result.capability))
        return StudySnapshot(trials, pareto_front(results))
