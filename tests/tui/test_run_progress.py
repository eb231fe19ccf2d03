"""How far a run is, as the dashboard header and phase list say it: the run's ETA counting down between events,
the trial in flight, and what a kind shows, read from the core's job-kind table."""

from __future__ import annotations

import pytest

from heretic_tui.core.runs.events import JobStarted, PhaseStarted, Progress, TrainingStep, TrialFinished, TrialStarted
from heretic_tui.core.runs.job_kinds import JOB_KINDS
from heretic_tui.tui.finetune_view import OPTIONAL_CURVES, curve_points, step_summary
from heretic_tui.tui.run_state import RunState

START = 1_790_000_000.0


def study_with_trials(durations: list[float], total: int) -> RunState:
    state = RunState()
    state.apply(JobStarted(job="abliterate", time=START))
    state.apply(PhaseStarted(phase="trials", total=total, time=START))
    moment = START
    for number, seconds in enumerate(durations):
        state.apply(TrialStarted(number=number, total=total, time=moment))
        moment += seconds
        state.apply(TrialFinished(number=number, total=total, refusals=1, refusal_total=2, kl=0.1, seconds=seconds,
                                  time=moment))
    return state


def test_the_study_eta_counts_down_while_a_trial_runs() -> None:
    state = study_with_trials([10.0, 12.0, 14.0], total=10)
    assert state.eta_seconds(START + 36) == 12.0 * 7, "seven trials to go at the median trial time"
    state.apply(TrialStarted(number=3, total=10, time=START + 36))
    assert state.eta_seconds(START + 36) == 12.0 * 7
    assert state.eta_seconds(START + 41) == pytest.approx(12.0 * 7 - 5), "it counts down inside the trial"
    assert state.running_trial_seconds(START + 41) == pytest.approx(5.0)
    assert state.eta_seconds(START + 100) == 12.0 * 6, "a trial past the median leaves the other six"


def test_before_the_first_trial_only_the_phase_has_an_eta() -> None:
    state = RunState()
    state.apply(JobStarted(job="abliterate", time=START))
    state.apply(PhaseStarted(phase="residuals", total=100, time=START))
    state.apply(Progress(phase="residuals", completed=25, total=100, time=START + 10))
    assert state.eta_seconds(START + 10) is None, "how long the study takes is not known yet"
    assert state.phase_eta_seconds(START + 10) == 30.0


def test_the_training_eta_counts_down_between_logged_steps() -> None:
    state = RunState()
    state.apply(JobStarted(job="finetune", time=START))
    state.apply(PhaseStarted(phase="train", total=100, time=START))
    state.apply(TrainingStep(step=10, total_steps=100, loss=2.0, eta_seconds=90.0, time=START + 10))
    assert state.eta_seconds(START + 10) == 90.0
    assert state.eta_seconds(START + 25) == 75.0, "the trainer's estimate less the time since that step"
    assert state.eta_seconds(START + 500) == 0.0


@pytest.mark.parametrize("kind", sorted(JOB_KINDS))
def test_what_a_run_shows_comes_from_its_job_kind(kind: str) -> None:
    state = RunState(job=kind)
    record = JOB_KINDS[kind]
    assert (state.has_trials, state.has_steps) == (record.has_trials, record.has_steps)
    state.status = "cancelled"
    assert state.can_resume == record.resumable


def test_a_run_of_an_unknown_kind_shows_nothing_it_cannot_know() -> None:
    state = RunState(job="something-newer")
    state.status = "failed"
    assert state.kind is None and not state.has_trials and not state.has_steps and not state.can_resume


def test_an_anchored_run_shows_its_anchor_divergence_and_its_curve() -> None:
    state = RunState()
    for step, divergence in ((1, 0.002), (2, 0.004)):
        state.apply(TrainingStep(step=step, total_steps=4, loss=1.0, anchor_divergence=divergence))
    assert "anchor KL 0.004" in step_summary(state)
    points, _ = curve_points(state, "anchor_divergence")
    assert [point.loss for point in points] == [0.002, 0.004]
    plain = RunState()
    plain.apply(TrainingStep(step=1, total_steps=4, loss=1.0))
    assert not any("anchor" in part for part in step_summary(plain))
    assert "anchor_divergence" in OPTIONAL_CURVES and not plain.training_curves.get("anchor_divergence")
