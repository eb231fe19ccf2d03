"""The study on its own (no model): journal repair and read-only opening, resume seeding, the derived number of
random trials, the Pareto front and the chosen trial, stale-trial marking."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy
import optuna
import pytest
from optuna.trial import TrialState

from heretic_tui.core.abliteration.study import (
    DIRECTION_DEPTH,
    KERNEL_PEAK_DEPTH,
    TrialResult,
    ask_untried,
    choose_trial,
    completed_trials,
    fail_stale_trials,
    open_study,
    pareto_front,
    read_study,
    study_path,
    suggest_parameters,
)
from heretic_tui.core.abliteration.search_plan import MINIMUM_RANDOM_TRIALS, random_trial_count
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import OptimizationSettings

LAYERS = 8


def result(number: int, refusals: int, kl: float) -> TrialResult:
    return TrialResult(number, refusals, kl, 1.0, 0.1, {})


def run_trials(run: Path, settings: OptimizationSettings, count: int, log: list[str] | None = None) -> optuna.Study:
    """Add ``count`` completed trials with a score that depends on the parameters, as a real trial's would."""
    run.mkdir(parents=True, exist_ok=True)
    study = open_study(run, settings, (log if log is not None else []).append)
    for _ in range(count):
        trial, parameters = ask_untried(study, LAYERS)
        refusals = int(10 * abs(parameters.direction_index - 5.0))
        study.tell(trial, [parameters.kernels["attention"].max_weight / 10, refusals])
    return study


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The number of random trials.


@pytest.mark.parametrize("trials", [1, 3, 5, 9, 10, 11, 15, 30, 60, 61, 200, 1000])
def test_derived_random_trials_are_about_a_third_and_leave_tpe_the_majority(trials: int) -> None:
    random_trials = random_trial_count(OptimizationSettings(trials=trials))
    assert 1 <= random_trials <= trials
    assert random_trials >= min(trials, MINIMUM_RANDOM_TRIALS)
    if trials >= 10:
        assert random_trials < trials - random_trials, "TPE guides the majority of the run"
        assert abs(random_trials - trials / 3) <= 1
    if trials > MINIMUM_RANDOM_TRIALS:
        assert random_trials < trials, "at least one trial is guided"


def test_a_random_trial_count_set_by_the_user_is_kept_within_the_run() -> None:
    assert random_trial_count(OptimizationSettings(trials=200, startup_trials=60)) == 60
    assert random_trial_count(OptimizationSettings(trials=30, startup_trials=60)) == 30
    assert random_trial_count(OptimizationSettings(trials=30)) == 10


def test_the_sampler_uses_the_derived_count(tmp_path: Path) -> None:
    study = open_study(tmp_path, OptimizationSettings(trials=12), [].append)
    assert study.sampler._n_startup_trials == random_trial_count(OptimizationSettings(trials=12)) == 4


# Resume never repeats work.


def test_a_resumed_study_samples_new_parameters(tmp_path: Path) -> None:
    settings = OptimizationSettings(trials=30, seed=7)
    run_trials(tmp_path, settings, 5)
    run_trials(tmp_path, settings, 6)
    run_trials(tmp_path, settings, 4)
    trials = read_study(tmp_path).trials
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 15
    parameter_sets = [tuple(sorted(trial.params.items())) for trial in trials]
    assert len(set(parameter_sets)) == 15
    assert trials[5].params != trials[0].params, "the first resumed trial is not trial 0 again"


def test_a_new_study_with_the_same_seed_reproduces_its_trials(tmp_path: Path) -> None:
    settings = OptimizationSettings(trials=10, seed=3)
    first = [trial.params for trial in run_trials(tmp_path / "a", settings, 4).trials]
    second = [trial.params for trial in run_trials(tmp_path / "b", settings, 4).trials]
    assert first == second


def test_an_exact_repeat_is_sampled_again_and_recorded_as_such(tmp_path: Path) -> None:
    settings = OptimizationSettings(trials=10, seed=5)
    study = run_trials(tmp_path, settings, 1)
    repeated = dict(study.trials[0].params)
    study.enqueue_trial(repeated)
    trial, _ = ask_untried(study, LAYERS)
    assert trial.params != repeated
    marked = [item for item in study.trials if item.state == TrialState.FAIL]
    assert len(marked) == 1 and marked[0].user_attrs["repeats_trial"] == 0


# The journal: a torn last record, and readers that never write.


def test_a_torn_journal_is_cut_before_appending_and_no_completed_trial_is_lost(tmp_path: Path) -> None:
    settings = OptimizationSettings(trials=20, seed=11)
    run_trials(tmp_path, settings, 4)
    journal = study_path(tmp_path)
    before = {trial.number: trial.values for trial in read_study(tmp_path).trials}
    torn = b'{"op_code": 4, "worker_id": "dead", "trial_id": 9, "sta'
    with open(journal, "ab") as handle:
        handle.write(torn)

    log: list[str] = []
    run_trials(tmp_path, settings, 3, log)
    study = read_study(tmp_path)
    assert {trial.number: trial.values for trial in study.trials if trial.number in before} == before
    assert len(completed_trials(study)) == 7
    side_files = list(tmp_path.glob("study.journal.cut-*"))
    assert len(side_files) == 1 and side_files[0].read_bytes() == torn
    assert any(side_files[0].name in line and str(len(torn)) in line for line in log), log
    assert journal.read_bytes().endswith(b"\n")


def test_a_record_appended_after_a_torn_one_is_reported_as_damage_not_a_traceback(tmp_path: Path) -> None:
    """What the cut prevents: any append after a partial line glues the two into one line nobody can parse."""
    run_trials(tmp_path, OptimizationSettings(trials=5), 2)
    with open(study_path(tmp_path), "ab") as handle:
        handle.write(b'{"op_code": 4, "worker')
        for name in ("glued onto the torn record", "read after it"):
            handle.write(b'{"op_code": 0, "worker_id": "w", "study_name": "%s", "directions": [1]}\n' % name.encode())
    with pytest.raises(UserInputError, match="damaged inside"):
        read_study(tmp_path)


def test_reading_a_study_leaves_its_journal_byte_identical(tmp_path: Path) -> None:
    study = run_trials(tmp_path, OptimizationSettings(trials=5), 3)
    study.ask()
    journal = study_path(tmp_path)
    with open(journal, "ab") as handle:
        handle.write(b'{"op_code": 5, "half')
    before = digest(journal)
    loaded = read_study(tmp_path)
    assert len(completed_trials(loaded)) == 3
    pareto_front([result(trial.number, int(trial.values[1]), trial.values[0]) for trial in completed_trials(loaded)])
    assert digest(journal) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["study.journal"]


def test_reading_a_folder_without_a_study_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no Optuna study"):
        read_study(tmp_path)
    assert not study_path(tmp_path).exists()


# Stale trials.


def test_trials_left_running_by_a_dead_worker_are_marked_failed_by_the_next_one(tmp_path: Path) -> None:
    settings = OptimizationSettings(trials=10)
    dead = run_trials(tmp_path, settings, 2)
    dead.ask()
    dead.ask()
    resumed = open_study(tmp_path, settings, [].append)
    assert fail_stale_trials(resumed) == [2, 3]
    states = [trial.state for trial in read_study(tmp_path).trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert fail_stale_trials(resumed) == []


# The Pareto front and the chosen trial.


def test_the_front_holds_exactly_the_trials_nothing_beats_ordered_by_refusals() -> None:
    results = [result(0, 5, 0.01), result(1, 2, 0.30), result(2, 2, 0.10), result(3, 0, 0.90),
               result(4, 5, 0.02), result(5, 1, 0.10), result(6, 0, 0.90), result(7, 9, 0.001)]
    assert pareto_front(results) == [3, 6, 5, 0, 7]
    assert pareto_front([]) == []
    assert pareto_front([result(4, 3, 0.2)]) == [4]


def test_the_front_matches_a_brute_force_definition_on_many_random_results() -> None:
    import random

    generator = random.Random(0)
    for _ in range(30):
        results = [result(number, generator.randint(0, 6), round(generator.random(), 2))
                   for number in generator.sample(range(500), 40)]
        dominated = {item.number for item in results for other in results
                     if other.kl <= item.kl and other.refusals <= item.refusals
                     and (other.kl, other.refusals) != (item.kl, item.refusals)}
        expected = sorted((item for item in results if item.number not in dominated),
                          key=lambda item: (item.refusals, item.kl, item.number))
        assert pareto_front(results) == [item.number for item in expected]


def test_the_chosen_trial_has_the_fewest_refusals_within_the_kl_limit_else_the_lowest_kl() -> None:
    results = [result(0, 5, 0.01), result(1, 2, 0.30), result(2, 2, 0.10), result(3, 0, 0.90), result(5, 1, 0.12)]
    assert choose_trial(results, max_kl=0.1).number == 2
    assert choose_trial(results, max_kl=0.2).number == 5
    assert choose_trial(results, max_kl=1.0).number == 3
    assert choose_trial(results, max_kl=0.001).number == 0
    assert choose_trial([], max_kl=0.1) is None


# The search space reaches every layer.


@pytest.mark.parametrize("layers", [2, 4, 6, 32, 80])
def test_every_layer_can_be_chosen_for_the_direction_and_the_kernel_peak(layers: int) -> None:
    last = layers - 1
    for value, expected in ((0.0, 0.0), (1.0, float(last))):
        fixed = {"direction_scope": "global", "direction_depth": value}
        for component in ("attention", "mlp"):
            fixed |= {f"{component}.max_weight": 1.0, f"{component}.max_weight_depth": value,
                      f"{component}.min_weight_fraction": 0.5, f"{component}.min_weight_distance": 1.0}
        parameters = suggest_parameters(optuna.trial.FixedTrial(fixed), layers)
        assert parameters.direction_index == pytest.approx(expected)
        assert [kernel.max_weight_position for kernel in parameters.kernels.values()] == pytest.approx([expected] * 2)


def test_the_priors_keep_most_of_their_mass_where_refusal_usually_is() -> None:
    samples = numpy.linspace(0.0, 1.0, 100001)
    direction = numpy.array([DIRECTION_DEPTH.fraction(value) for value in samples])
    peak = numpy.array([KERNEL_PEAK_DEPTH.fraction(value) for value in samples])
    assert numpy.all(numpy.diff(direction) >= 0) and numpy.all(numpy.diff(peak) >= 0)
    assert ((direction >= 0.4) & (direction <= 0.9)).mean() == pytest.approx(0.7, abs=1e-3)
    assert (direction > 0.9).mean() == pytest.approx(0.2, abs=1e-3)
    assert (peak >= 0.6).mean() == pytest.approx(0.9, abs=1e-3)
