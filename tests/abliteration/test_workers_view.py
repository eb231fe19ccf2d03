"""The dashboard's state of a shared study: one worker's own events plus every worker's trials read from the storage
(who ran which, the ones in flight, the front over all), and a trial whose worker died leaves the table; a trial
whose worker died before it could beat once is failed and queued again all the same."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from heretic_tui.core.abliteration.study_storage import StudyLocation, open_rdb_storage
from heretic_tui.core.abliteration.study_view import StudySnapshot, StudyTrial
from heretic_tui.core.abliteration.workers import UNCLAIMED_SECONDS, retry_abandoned_trials, start_heartbeat
from heretic_tui.core.runs.events import BaselineMeasured, JobStarted, TrialFinished, TrialStarted
from heretic_tui.tui.run_state import RunState


def own_events() -> RunState:
    return RunState.from_events([
        JobStarted(job="abliterate", model="demo", run_dir="/runs/a"),
        BaselineMeasured(refusals=20, total=20),
        TrialStarted(number=0, total=6),
        TrialFinished(number=0, total=6, refusals=3, refusal_total=20, kl=0.1, seconds=2.0, pareto=[0]),
        TrialStarted(number=2, total=6),
    ])


def test_every_workers_trials_join_the_own_ones() -> None:
    state = own_events()
    state.apply_study(StudySnapshot(
        trials=[StudyTrial(0, "box/gpu0/1", False, 3, 0.1, 2.0), StudyTrial(1, "box/gpu1/2", False, 1, 0.3, 4.0),
                StudyTrial(2, "box/gpu0/1", True), StudyTrial(3, "box/gpu1/2", True)],
        pareto=[1, 0],
    ))
    assert {number: row.worker for number, row in state.trials.items()} == {
        0: "box/gpu0/1", 1: "box/gpu1/2", 2: "box/gpu0/1", 3: "box/gpu1/2"}
    other = state.trials[1]
    assert other.finished and (other.refusals, other.refusal_total, other.kl, other.seconds) == (1, 20, 0.3, 4.0)
    assert not state.trials[3].finished and state.running_trial == 2
    assert state.pareto == [1, 0]
    assert [(speed.worker, speed.completed, speed.median_seconds, speed.running) for speed in state.workers] == [
        ("box/gpu0/1", 1, 2.0, True), ("box/gpu1/2", 1, 4.0, True)]


def test_a_trial_the_storage_no_longer_shows_leaves() -> None:
    state = own_events()
    state.apply_study(StudySnapshot([StudyTrial(0, "a", False, 3, 0.1, 2.0), StudyTrial(5, "b", True)], [0]))
    assert 5 in state.trials
    state.apply_study(StudySnapshot([StudyTrial(0, "a", False, 3, 0.1, 2.0), StudyTrial(6, "b", False, 0, 0.2, 3.0)],
                                    [6, 0]))
    assert 5 not in state.trials and state.trials[6].finished
    assert 2 in state.trials, "this worker's own trial in flight stays until its events end it"
    assert [speed.describe() for speed in state.workers] == ["a: 1 trials, 2.0s per trial",
                                                             "b: 1 trials, 3.0s per trial"]


def test_a_trial_whose_worker_died_before_its_first_beat_is_failed_and_run_again(tmp_path: Path) -> None:
    storage = open_rdb_storage(StudyLocation(f"sqlite:///{tmp_path / 'study.db'}", "study"), heartbeat_seconds=1)
    study = optuna.create_study(storage=storage)
    abandoned = study.ask()
    abandoned.suggest_float("x", 0.0, 1.0)
    claimed = study.ask()
    claimed.suggest_float("x", 0.0, 1.0)
    start_heartbeat(study, claimed)
    retry_abandoned_trials(study)
    assert [trial.state for trial in study.trials] == [TrialState.RUNNING, TrialState.RUNNING], "too early to tell"
    retry_abandoned_trials(study, now=time.time() + UNCLAIMED_SECONDS + 1)
    states = {trial.number: trial.state for trial in study.trials}
    assert states[abandoned.number] == TrialState.FAIL and states[claimed.number] == TrialState.RUNNING
    retry = study.trials[-1]
    assert retry.state == TrialState.WAITING and retry.params == abandoned.params
    assert retry.system_attrs["failed_trial"] == abandoned.number
    study.tell(claimed, 0.5)
