"""How many trials a batch asks: random trials K at a time up to the end of the random part, guided batches that
grow with what TPE has observed and shrink as the budget runs out, and exactly the target in all."""

from __future__ import annotations

import pytest

from heretic_tui.core.abliteration.search_plan import (
    OBSERVATIONS_PER_PENDING_TRIAL,
    TRIALS_LEFT_PER_BATCHED_TRIAL,
    trials_to_ask,
)


def schedule(trial_batch: int, random_trials: int, target: int, completed: int = 0) -> list[int]:
    """The batch sizes of a run, each batch told before the next is asked (one worker)."""
    sizes = []
    while completed < target:
        size = trials_to_ask(trial_batch, random_trials, target, completed)
        assert size >= 1, f"no trial asked at {completed} of {target}"
        sizes.append(size)
        completed += size
    return sizes


def test_one_trial_per_pass_stays_one_at_a_time() -> None:
    assert schedule(1, 10, 30) == [1] * 30


def test_a_short_study_batches_its_random_trials_and_guides_one_by_one() -> None:
    """30 trials, 10 random, K = 4: the random part in three passes that stop at its end, then every guided trial
    alone, since TPE has seen fewer than 40 results; so its guided trials are those of K = 1."""
    assert schedule(4, 10, 30) == [4, 4, 2] + [1] * 20


def test_guided_batches_grow_with_what_tpe_has_seen_and_shrink_at_the_end() -> None:
    """120 trials, 20 random, K = 8: one guided trial per twenty completed (1 from 20, 2 from 40, 3 from 60, 4 from
    80), then at most a quarter of what is left (3 with 15 left, 2 with 9, 1 from 7)."""
    assert schedule(8, 20, 120) == [8, 8, 4] + [1] * 20 + [2] * 10 + [3] * 7 + [4] * 6 + [3, 3, 2] + [1] * 7


@pytest.mark.parametrize("trial_batch,random_trials,target", [(4, 10, 30), (8, 67, 200), (8, 4, 6), (3, 0, 50),
                                                              (64, 20, 1000), (8, 30, 30)])
def test_every_batch_keeps_to_the_limits_and_the_run_reaches_its_target_exactly(
        trial_batch: int, random_trials: int, target: int) -> None:
    completed = 0
    for size in schedule(trial_batch, random_trials, target):
        assert 1 <= size <= trial_batch
        if completed < random_trials:
            assert completed + size <= random_trials, "a batch must not mix random and guided trials"
        elif size > 1:
            assert size <= completed // OBSERVATIONS_PER_PENDING_TRIAL
            assert size <= (target - completed) // TRIALS_LEFT_PER_BATCHED_TRIAL
        completed += size
    assert completed == target


def test_a_long_study_reaches_the_full_batch() -> None:
    """200 trials at K = 8 (67 random): 43 passes, so batching still pays where it matters."""
    sizes = schedule(8, 67, 200)
    assert sizes.count(8) >= 9 and len(sizes) <= 45
    assert len(schedule(8, 167, 1000)) <= 160


def test_a_resumed_or_finished_study_asks_from_where_it_stands() -> None:
    assert trials_to_ask(8, 10, 30, 30) == 0
    assert trials_to_ask(8, 10, 30, 29) == 1
    assert trials_to_ask(8, 10, 30, 7) == 3
    assert trials_to_ask(8, 10, 200, 100) == 5
    assert trials_to_ask(8, 10, 400, 200) == 8
