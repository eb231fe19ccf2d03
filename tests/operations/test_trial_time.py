"""The time estimate of a study from its measured trials, and how the headless progress lines and the dashboard's
state count it down."""

from __future__ import annotations

import io

import pytest

from heretic_tui.cli.following import ProgressPrinter
from heretic_tui.core.operations.trial_time import (
    RECENT_TRIALS,
    approximate_duration,
    estimate_study,
    remaining_seconds,
)
from heretic_tui.core.runs.events import (
    JobStarted,
    PhaseStarted,
    StudyEstimate,
    TrialFinished,
    TrialStarted,
    event_from_json,
)
from heretic_tui.tui.run_state import RunState

START = 1_790_000_000.0


def test_no_estimate_before_a_trial_has_a_time() -> None:
    assert estimate_study([], 10) is None
    assert estimate_study([0.0], 10) is None, "a trial without a recorded time is no calibration"


def test_the_first_trial_is_the_calibration() -> None:
    estimate = estimate_study([12.0], trials_left=9)
    assert estimate is not None
    assert (estimate.seconds_per_trial, estimate.remaining_seconds, estimate.trials_left,
            estimate.measured_trials) == (12.0, 108.0, 9, 1)


def test_the_estimate_follows_the_latest_trials_not_the_first_ones() -> None:
    early = [1.0] * 20
    late = [10.0] * RECENT_TRIALS
    estimate = estimate_study(early + late, trials_left=5)
    assert estimate is not None
    assert estimate.seconds_per_trial == 10.0, "a change of pace shows within the latest trials"
    assert estimate.measured_trials == RECENT_TRIALS


def test_one_slow_trial_does_not_swing_it() -> None:
    estimate = estimate_study([10.0, 11.0, 300.0, 9.0, 10.0], trials_left=10)
    assert estimate is not None and estimate.seconds_per_trial == 10.0


def test_batched_trials_count_what_is_left_in_whole_batches() -> None:
    assert remaining_seconds(3.0, 10, trial_batch=4) == 3 * 4 * 3.0, "10 trials are 3 passes of 4"
    assert remaining_seconds(3.0, 8, trial_batch=4) == 8 * 3.0
    assert remaining_seconds(3.0, 0, trial_batch=4) == 0.0
    estimate = estimate_study([2.5] * 4, trials_left=5, trial_batch=4)
    assert estimate is not None and estimate.remaining_seconds == 8 * 2.5 and estimate.trial_batch == 4


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "under 1 s"), (40, "about 40 s"), (720, "about 12 min"),
                                               (3 * 3600 + 1800, "about 3.5 h")])
def test_durations_read_as_estimates(seconds: float, text: str) -> None:
    assert approximate_duration(seconds) == text


def test_the_event_reads_back_from_the_journal() -> None:
    estimate = StudyEstimate(seconds_per_trial=2.5, remaining_seconds=20.0, trials_left=5, trial_batch=4,
                             measured_trials=4, time=START)
    assert event_from_json(estimate.to_json()) == estimate


def finished(number: int, total: int, moment: float) -> TrialFinished:
    return TrialFinished(number=number, total=total, refusals=1, refusal_total=4, kl=0.1, seconds=12.0, time=moment)


def test_headless_lines_say_the_calibration_and_then_the_time_left() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    printer(StudyEstimate(seconds_per_trial=12.0, remaining_seconds=108.0, trials_left=9, measured_trials=1,
                          time=START))
    printer(finished(0, 10, START))
    printer(StudyEstimate(seconds_per_trial=12.0, remaining_seconds=96.0, trials_left=8, measured_trials=2,
                          time=START + 12))
    printer(finished(1, 10, START + 24))
    printer(StudyEstimate(seconds_per_trial=12.0, remaining_seconds=0.0, trials_left=0, measured_trials=10,
                          time=START + 120))
    printer(finished(9, 10, START + 120))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, "the calibration once, then one line per trial"
    assert "time: 12.0s per trial on this machine (the first trial), about 2 min for the 9 trials left" in lines[0]
    assert lines[1].endswith("· about 2 min left at 12.0s per trial")
    assert lines[2].endswith("· about 84 s left at 12.0s per trial"), "less the time since the estimate came"
    assert "trial 1 (target 10 trials)" in lines[2]
    assert "left" not in lines[3], "the last trial leaves nothing to estimate"


def study_state(total: int) -> RunState:
    state = RunState()
    state.apply(JobStarted(job="abliterate", time=START))
    state.apply(PhaseStarted(phase="trials", total=total, time=START))
    return state


def test_the_dashboard_counts_the_workers_estimate_down() -> None:
    state = study_state(10)
    state.apply(TrialStarted(number=0, total=10, time=START))
    state.apply(StudyEstimate(seconds_per_trial=12.0, remaining_seconds=108.0, trials_left=9, measured_trials=1,
                              time=START + 30))
    state.apply(finished(0, 10, START + 30))
    assert state.median_trial_seconds() == 12.0
    assert state.eta_seconds(START + 30) == 108.0, "the worker's figure, not the fold's own median x trials"
    state.apply(TrialStarted(number=1, total=10, time=START + 30))
    assert state.eta_seconds(START + 35) == pytest.approx(103.0), "it counts down inside the trial"
    assert state.eta_seconds(START + 500) == 96.0, "a trial running long leaves the trials after it"


def test_a_batch_in_flight_holds_the_trials_after_it() -> None:
    state = study_state(12)
    state.apply(StudyEstimate(seconds_per_trial=2.0, remaining_seconds=16.0, trials_left=8, trial_batch=4,
                              measured_trials=4, time=START))
    assert state.eta_seconds(START + 4) == 12.0
    assert state.eta_seconds(START + 100) == 8.0, "the batch in flight is four trials' worth"


def test_a_resumed_start_forgets_the_estimate_of_the_last_one() -> None:
    state = study_state(10)
    state.apply(StudyEstimate(seconds_per_trial=12.0, remaining_seconds=60.0, trials_left=5, time=START))
    state.apply(JobStarted(job="abliterate", resumed=True, time=START + 1000))
    assert state.study_estimate is None


def test_the_estimate_follows_the_batch_schedule() -> None:
    from heretic_tui.core.abliteration.search_plan import pass_sizes, trials_to_ask

    sizes = pass_sizes(8, 20, 200, 0)
    assert sum(sizes) == 200
    completed = 0
    for size in sizes:
        assert size == trials_to_ask(8, 20, 200, completed)
        completed += size
    assert pass_sizes(8, 20, 200, 200) == []
    per_trial = 0.5
    estimate = estimate_study([per_trial] * 8, trials_left=200, trial_batch=8, passes=sizes)
    assert estimate is not None
    assert estimate.remaining_seconds == len(sizes) * 8 * per_trial
    one_at_a_time = estimate_study([per_trial] * 8, trials_left=10, trial_batch=1, passes=pass_sizes(1, 4, 20, 10))
    assert one_at_a_time is not None and one_at_a_time.remaining_seconds == 10 * per_trial
