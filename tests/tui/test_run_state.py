"""The dashboard's state folded from real journals, checked against what the core says independently of the fold:
its report.json, its Pareto front, its events' own fields. Phases, trials, best trial, ETA, endings, resume."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from recorded_runs import Recording, RecordedRun, trial_finished

from heretic_tui.core.abliteration.study import TrialResult, choose_trial, pareto_front
from heretic_tui.core.runs.events import (
    JobCancelled,
    JobError,
    JobStarted,
    Metrics,
    PhaseStarted,
    Progress,
    TrainingStep,
    TrialFinished,
    TrialStarted,
)
from heretic_tui.core.runs.handle import attach
from heretic_tui.core.settings import OptimizationSettings
from heretic_tui.tui.run_state import RunState


def report_results(run: RecordedRun) -> list[TrialResult]:
    report = run.report
    assert report is not None and report["trials"], f"{run.path} has no trials in its report"
    return [TrialResult(trial["number"], trial["refusals"], trial["kl"], trial["seconds"],
                        trial["apply_reset_seconds"], trial["params"]) for trial in report["trials"]]


def test_a_finished_study_shows_what_its_report_says(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("finished", tmp_path)
    report = run.report
    assert report is not None
    results = report_results(run)
    state = RunState.from_events(run.events)

    assert state.status == "finished" and state.job == "abliterate" and state.model == report["model"]
    assert {number: (row.refusals, row.kl) for number, row in state.trials.items()} == {
        result.number: (result.refusals, result.kl) for result in results}
    assert state.trial_total == len(results)
    assert (state.baseline_refusals, state.baseline_total) == (report["baseline"]["refusals"],
                                                               report["baseline"]["total"])
    front = pareto_front(results)
    assert front, "a study with trials has a Pareto front"
    assert sorted(state.pareto) == sorted(report["pareto"]) == sorted(front)
    best = state.best_trial()
    assert best is not None and best.number == report["chosen_trial"]
    chosen = choose_trial(results, OptimizationSettings().choice_max_kl)
    assert chosen is not None and best.number == chosen.number
    assert state.median_trial_seconds() == pytest.approx(statistics.median(result.seconds for result in results))
    assert all(phase.finished for phase in state.phases.values())
    assert state.eta_seconds(state.last_event_at + 1000) is None


def test_the_front_marks_every_trial_no_other_beats(recorded: Recording, tmp_path: Path) -> None:
    """Each trial the study reports is on the front exactly when no other trial is at least as good on both
    objectives and better on one (checked pairwise here, against the core's answer)."""
    results = report_results(recorded.place("finished", tmp_path))
    front = set(pareto_front(results))
    for result in results:
        beaten = any(other.refusals <= result.refusals and other.kl <= result.kl
                     and (other.refusals < result.refusals or other.kl < result.kl) for other in results)
        assert (result.number in front) == (not beaten), result
    assert len(front) < len(results), "the recorded study has trials off the front, so the check can fail"


def test_a_study_in_flight_counts_its_eta_down_between_trials(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("killed", tmp_path, trials=4)
    state = RunState.from_events(run.events)
    in_flight = run.events[-1]
    assert isinstance(in_flight, TrialStarted) and in_flight.number == 4
    assert state.is_running and state.running_trial == 4 and state.current_phase == "trials"
    assert len(state.finished_trials) == 4 and state.trial_total == in_flight.total
    median = statistics.median(item.seconds for item in run.trials.values())
    assert state.median_trial_seconds() == pytest.approx(median)
    estimate = state.study_estimate
    assert estimate is not None, "the worker measured its trials"
    assert estimate.measured_trials == 4 and estimate.trials_left == in_flight.total - 4
    assert estimate.seconds_per_trial == pytest.approx(median), "four trials: the median of them all"
    assert estimate.remaining_seconds == pytest.approx(median * (in_flight.total - 4))

    started = in_flight.time
    left = median * (in_flight.total - 4) - (started - estimate.time)
    assert state.eta_seconds(started) == pytest.approx(left)
    assert state.eta_seconds(started + median / 2) == pytest.approx(left - median / 2)
    assert state.eta_seconds(started + 10 * median) == pytest.approx(median * (in_flight.total - 5)), \
        "a trial running long leaves the trials not started yet"

    for item in run.play_on(trial_finished(4)):
        state.apply(item)
    assert len(state.finished_trials) == 5 and state.trials[4].refusals == run.trials[4].refusals


def test_a_phase_eta_comes_from_its_own_rate(recorded: Recording, tmp_path: Path) -> None:
    events = recorded.place("finished", tmp_path).events
    started = next(item for item in events if isinstance(item, PhaseStarted) and item.phase == "residuals")
    progress = next(item for item in events if isinstance(item, Progress) and item.phase == "residuals"
                    and item.total and 0 < item.completed < item.total)
    state = RunState.from_events(events[:events.index(progress) + 1])
    assert state.current_phase == "residuals"
    elapsed = progress.time - started.time
    expected = elapsed / progress.completed * (progress.total - progress.completed)
    assert state.phase_eta_seconds(progress.time) == pytest.approx(expected)


def test_named_steps_belong_to_their_phase() -> None:
    """A phase's named steps (the fine-tune's ``load: <stage>`` progress) count inside that phase."""
    state = RunState()
    state.apply(JobStarted(job="finetune", time=1.0))
    state.apply(PhaseStarted(phase="load", time=1.0))
    state.apply(Progress(phase="load: base training", completed=3, total=12, time=2.0))
    assert list(state.phases) == ["load"]
    assert state.phases["load"].step == "base training" and state.phases["load"].step_completed == 3


def test_a_failed_run_keeps_its_error_and_its_trials(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("failed", tmp_path)
    error = run.events[-1]
    assert isinstance(error, JobError) and error.user_error
    state = RunState.from_events(run.events)
    assert state.status == "failed" and state.error_message == error.message and state.user_error
    assert "does not exist" in state.error_message
    assert state.running_trial is None
    assert sorted(number for number, row in state.trials.items() if row.finished) == sorted(run.trials)
    assert run.trials, "the failed run's first session finished trials"
    assert state.can_resume


def test_a_cancelled_run_can_be_resumed(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("cancelled", tmp_path)
    cancelled = run.events[-1]
    assert isinstance(cancelled, JobCancelled)
    state = RunState.from_events(run.events)
    assert state.status == "cancelled" and state.cancel_reason == cancelled.reason
    assert len(state.finished_trials) == len(run.trials) >= 3
    assert state.running_trial is None and state.can_resume


def test_a_resumed_run_keeps_earlier_trials_and_forgets_the_old_ending(recorded: Recording, tmp_path: Path) -> None:
    events = recorded.place("failed", tmp_path).events
    resumed = next(index for index, item in enumerate(events) if isinstance(item, JobStarted) and item.resumed)
    assert any(isinstance(item, JobCancelled) for item in events[:resumed])
    state = RunState.from_events(events[:resumed + 1])
    assert state.status == "running" and state.resumed and state.cancel_reason == ""
    first_session = {item.number for item in events[:resumed] if isinstance(item, TrialFinished)}
    assert {number for number, row in state.trials.items() if row.finished} == first_session
    for item in events[resumed + 1:]:
        state.apply(item)
    assert state.status == "failed"


def test_a_killed_worker_folds_into_a_failed_run_naming_the_signal(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("killed", tmp_path)
    assert RunState.from_events(run.events).status == "running", "the journal alone does not know"
    state = RunState.from_events(list(attach(run.path).events(follow=True, poll_seconds=0.01)))
    assert state.status == "failed" and "SIGKILL" in state.error_message
    assert len(state.finished_trials) == len(run.trials) > 0


def test_a_finetune_run_keeps_every_logged_step(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("finetune", tmp_path)
    report = run.report
    assert report is not None
    state = RunState.from_events(run.events)
    losses = {item.step: item.loss for item in run.steps if item.loss is not None}
    evaluations = {item.step: item.eval_loss for item in run.steps if item.eval_loss is not None}
    assert losses and evaluations
    assert state.status == "finished" and state.has_steps and not state.has_trials
    assert state.train_losses == losses and state.eval_losses == evaluations
    assert state.latest_step is not None and state.latest_step.step == report["steps"]
    assert state.metrics["evaluation"]["eval_loss_after"] == pytest.approx(report["eval_loss_after"])


def test_a_finetune_in_flight_counts_down_from_the_trainers_estimate(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("finetune", tmp_path, steps=12)
    step = next(item for item in reversed(run.events) if isinstance(item, TrainingStep) and item.eta_seconds)
    state = RunState.from_events(run.events)
    assert state.is_running and state.current_phase == "train"
    assert state.eta_seconds(step.time) == pytest.approx(step.eta_seconds)
    assert state.eta_seconds(step.time + step.eta_seconds / 2) == pytest.approx(step.eta_seconds / 2)
    assert state.eta_seconds(step.time + 10 * step.eta_seconds) == 0.0


def test_the_worker_times_its_study_from_its_own_trials(recorded: Recording, tmp_path: Path) -> None:
    """One estimate per pass (the trials that shared a forward pass), each just before the trials it counts, the
    last one in the report; checked against the trials' own recorded times and the batch schedule."""
    from heretic_tui.core.abliteration.search_plan import pass_sizes
    from heretic_tui.core.operations.trial_time import RECENT_TRIALS
    from heretic_tui.core.runs.events import StudyEstimate

    run = recorded.place("finished", tmp_path)
    report = run.report
    assert report is not None
    search = next(item for item in run.events if isinstance(item, Metrics) and item.name == "search")
    trial_batch, random_trials = search.values["trial_batch"], search.values["random_trials"]
    estimates = [item for item in run.events if isinstance(item, StudyEstimate)]
    finished = [item for item in run.events if isinstance(item, TrialFinished)]
    assert len(finished) == len(report["trials"])
    passes = []
    for estimate in estimates:
        index = run.events.index(estimate)
        end = index + 1
        while end < len(run.events) and isinstance(run.events[end], TrialFinished):
            end += 1
        passes.append(run.events[index + 1:end])
    assert all(passes) and sum(len(items) for items in passes) == len(finished), \
        "the estimate comes with the trials it counts"
    assert max(len(items) for items in passes) > 1, "the recorded study shares passes, so the check can fail"
    for estimate, counted in zip(estimates, passes):
        last = run.events.index(counted[-1])
        done = sorted((item for item in finished if run.events.index(item) <= last), key=lambda item: item.number)
        latest = [item.seconds for item in done][-RECENT_TRIALS:]
        assert estimate.seconds_per_trial == pytest.approx(statistics.median(latest))
        assert estimate.trials_left == counted[0].total - len(done)
        schedule = pass_sizes(trial_batch, random_trials, counted[0].total, len(done))
        assert estimate.remaining_seconds == pytest.approx(len(schedule) * (schedule[0] if schedule else 0)
                                                           * estimate.seconds_per_trial)
    last_estimate = estimates[-1]
    assert last_estimate.trials_left == 0
    assert report["time_estimate"] == {"seconds_per_trial": pytest.approx(last_estimate.seconds_per_trial),
                                       "measured_trials": min(len(finished), RECENT_TRIALS),
                                       "trial_batch": trial_batch}
