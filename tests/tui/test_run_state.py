"""The dashboard's state folded from recorded journals: phases, trials, best trial, ETA, endings, resume."""

from __future__ import annotations

from pathlib import Path

from recorded_runs import START, preamble, trial_events, write_run

from heretic_tui.core.runs.events import JobCancelled, JobStarted, PhaseStarted, Progress
from heretic_tui.tui.run_state import RunState


def test_finished_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, "finished", trials_total=12, trials_done=12)
    state = RunState.from_events(run.events)
    assert state.status == "finished"
    assert state.job == "abliterate" and state.model == "demo"
    assert len(state.finished_trials) == 12 and state.trial_total == 12
    assert state.baseline_refusals == 9 and state.baseline_total == 10
    chosen = state.summary["chosen_trial"]
    assert state.best_trial() is state.trials[chosen]
    assert set(state.pareto) <= set(state.trials)
    assert all(phase.finished for phase in state.phases.values())
    assert state.eta_seconds(START + 1000) is None


def test_running_run_eta_uses_the_median_trial_time(tmp_path: Path) -> None:
    run = write_run(tmp_path, "running", trials_total=20, trials_done=5, ending="running")
    state = RunState.from_events(run.events)
    assert state.is_running and state.running_trial == 5
    median = state.median_trial_seconds()
    assert median is not None
    assert state.eta_seconds(START + 100) == median * 15
    assert state.current_phase == "trials"


def test_phase_eta_from_its_own_rate() -> None:
    state = RunState()
    state.apply(JobStarted(job="abliterate", time=START))
    state.apply(PhaseStarted(phase="residuals", total=100, time=START))
    state.apply(Progress(phase="residuals", completed=25, total=100, time=START + 10))
    assert state.eta_seconds(START + 10) == 30.0


def test_named_steps_belong_to_their_phase() -> None:
    state = RunState()
    state.apply(JobStarted(job="abliterate", time=START))
    state.apply(PhaseStarted(phase="load", time=START))
    state.apply(Progress(phase="load: base training", completed=3, total=12, time=START + 1))
    assert list(state.phases) == ["load"]
    assert state.phases["load"].step == "base training" and state.phases["load"].step_completed == 3


def test_failed_and_cancelled_runs(tmp_path: Path) -> None:
    failed = RunState.from_events(write_run(tmp_path, "failed", trials_done=4, ending="failed").events)
    assert failed.status == "failed" and "out of memory" in failed.error_message
    assert failed.running_trial is None and len(failed.trials) == 4
    cancelled = RunState.from_events(write_run(tmp_path, "cancelled", trials_done=3, ending="cancelled").events)
    assert cancelled.status == "cancelled" and "resumed" in cancelled.cancel_reason
    assert cancelled.can_resume


def test_a_resumed_run_keeps_earlier_trials_and_forgets_the_old_ending(tmp_path: Path) -> None:
    run = write_run(tmp_path, "resumed", trials_total=10, trials_done=4, ending="cancelled")
    results: dict[int, tuple[int, float]] = {}
    resumed = [JobStarted(job="abliterate", model="demo", resumed=True, time=START + 500)]
    resumed += preamble(run.path, "demo", 10)[1:]
    resumed += trial_events(4, 2, 10, START + 520, results)
    state = RunState.from_events(run.events + resumed)
    assert state.status == "running" and state.resumed
    assert state.cancel_reason == ""
    assert sorted(number for number, row in state.trials.items() if row.finished) == [0, 1, 2, 3, 4, 5]
    state.apply(JobCancelled(reason="again", time=START + 600))
    assert state.status == "cancelled"
