"""The optional third objective and ``evaluate`` on a run's trial: one short demo run with the objective on.

The run is shared by the tests of this module (three trials of the demo model, a dozen questions each), so the
objective, the front over three values, the report, ``evaluate RUN --trial N`` and the export's model card are all
checked on what the worker really wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capability.harness_tasks import write_task
from heretic_tui.cli.main import main
from heretic_tui.core.abliteration.job import start_abliteration
from heretic_tui.core.abliteration.study import (
    TrialResult,
    choose_trial,
    completed_trials,
    has_capability_objective,
    objective_values,
    open_study,
    pareto_front,
    read_study,
    trial_result,
)
from heretic_tui.core.capability.multiple_choice import ITEMS
from heretic_tui.core.capability.objective import objective_items
from heretic_tui.core.errors import EXIT_OK
from heretic_tui.core.settings import OptimizationSettings, Settings

QUESTIONS = 12


@pytest.fixture(scope="module")
def objective_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings()
    settings.prompts.max_direction_prompts = 16
    settings.prompts.max_eval_prompts = 8
    settings.abliteration.refusal_max_tokens = 4
    settings.abliteration.capability_questions = 0
    settings.optimization.trials = 3
    settings.optimization.capability_objective = True
    settings.optimization.capability_objective_questions = QUESTIONS
    run_dir = tmp_path_factory.mktemp("objective") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(run_dir.parent / "data"))
        handle = start_abliteration(settings, run_dir)
        assert handle.wait(timeout=600) == 0, handle.run.log_path.read_text(encoding="utf-8")[-4000:]
    return run_dir


def test_every_trial_records_its_capability_and_the_front_is_over_three_values(objective_run: Path) -> None:
    study = read_study(objective_run)
    assert has_capability_objective(study) and len(study.directions) == 3
    trials = completed_trials(study)
    assert len(trials) == 3
    for trial in trials:
        assert len(trial.values) == 3
        assert trial.values[2] * QUESTIONS == pytest.approx(round(trial.values[2] * QUESTIONS)), \
            "the score is a share of the objective's questions"
    report = json.loads((objective_run / "report.json").read_text(encoding="utf-8"))
    assert [entry["capability"] for entry in report["trials"]] == [trial.values[2] for trial in trials]
    results = [trial_result(trial) for trial in trials]
    assert report["pareto"] == pareto_front(results)
    assert {item.number for item in study.best_trials} == set(report["pareto"])


def test_a_headless_run_prints_each_trials_capability(objective_run: Path) -> None:
    import io

    from heretic_tui.cli.following import ProgressPrinter
    from heretic_tui.core.runs.run_directory import RunDirectory

    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    for item in RunDirectory(objective_run).read_events():
        printer(item)
    lines = [line for line in stream.getvalue().splitlines() if " capability: " in line]
    scores = [trial.values[2] for trial in completed_trials(read_study(objective_run))]
    assert [line.split("] ", 1)[1] for line in lines] == [
        f"  trial {number} capability: {score:.0%} of {QUESTIONS} questions" for number, score in enumerate(scores)]


def test_the_front_counts_the_capability_when_every_trial_has_one() -> None:
    """Two trials equal on KL and refusals: with capability the better one dominates, without both are on it."""
    worse, better, other = (TrialResult(0, 1, 0.1, 0, 0, {}, "", 0.5), TrialResult(1, 1, 0.1, 0, 0, {}, "", 0.7),
                            TrialResult(2, 2, 0.05, 0, 0, {}, "", 0.2))
    assert pareto_front([worse, better, other]) == [1, 2]
    two = [TrialResult(item.number, item.refusals, item.kl, 0, 0, {}) for item in (worse, better, other)]
    assert pareto_front(two) == [0, 1, 2]
    assert choose_trial([worse, better, other], 0.2).number == 1


def test_a_two_objective_study_resumes_with_two_whatever_the_setting(tmp_path: Path) -> None:
    settings = OptimizationSettings()
    study = open_study(tmp_path, settings, lambda text: None)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, objective_values(study, 0.2, 3, None))
    settings.capability_objective = True
    resumed = open_study(tmp_path, settings, lambda text: None)
    assert not has_capability_objective(resumed)
    assert objective_values(resumed, 0.1, 2, 0.9) == [0.1, 2]
    assert trial_result(completed_trials(resumed)[0]).capability is None
    (tmp_path / "new").mkdir()
    fresh = open_study(tmp_path / "new", settings, lambda text: None)
    assert has_capability_objective(fresh) and fresh.directions[2].name == "MAXIMIZE"
    with pytest.raises(ValueError):
        objective_values(fresh, 0.1, 2, None)


def test_the_objective_questions_are_a_fixed_spread_subset() -> None:
    items = objective_items(QUESTIONS)
    assert items == objective_items(QUESTIONS) and len(set(items)) == QUESTIONS
    assert len({item.family for item in items}) >= 6
    assert objective_items(10**6) == ITEMS


def export_in_process(run_dir: Path, trial: int, output: Path) -> None:
    """The trial exported as ``heretic-tui export`` writes it, without spawning a worker for it."""
    from heretic_tui.core.abliteration.ablation import Abliterator
    from heretic_tui.core.abliteration.direction_set import DirectionSet
    from heretic_tui.core.models.loading import load_model
    from heretic_tui.core.runs.run_directory import RunDirectory
    from heretic_tui.core.shipping.export import export_loaded_trial, run_settings

    run = RunDirectory.open(run_dir)
    loaded = load_model(run_settings(run).model)
    abliterator = Abliterator(loaded.model, DirectionSet.read(run_dir / "directions.safetensors")[0])
    export_loaded_trial(None, loaded, abliterator, read_study(run_dir), trial, output, adapter=False, run=run)


def evaluate(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main(["evaluate", *arguments, "--batch-size", "4"])
    out, err = capsys.readouterr()
    assert caught.value.code == EXIT_OK, err
    return out


def test_evaluate_a_trial_of_the_run_then_its_export_carries_the_results_to_the_card(
        objective_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path, "pick_first", 0)
    write_task(tmp_path, "pick_second", 1)
    report = json.loads((objective_run / "report.json").read_text(encoding="utf-8"))
    chosen = report["chosen_trial"]
    out = evaluate([str(objective_run), "--trial", str(chosen), "--tasks", "pick_first", "--include-path",
                    str(tmp_path)], capsys)
    assert out.splitlines()[0] == f"| task | metric | original | {objective_run.name}#{chosen} | stderr |"
    evaluation = json.loads((objective_run / "evaluation.json").read_text(encoding="utf-8"))
    assert evaluation["harness"] == "lm-eval" and evaluation["version"]
    original = evaluation["original"]["pick_first"]
    edited = evaluation["trials"][str(chosen)]["pick_first"]
    assert original["samples"] == edited["samples"] == 6 and original["limit"] is None
    assert 0.0 <= edited["metrics"]["acc"] <= 1.0
    report = json.loads((objective_run / "report.json").read_text(encoding="utf-8"))
    assert report["evaluation"] == evaluation

    output = tmp_path / "export"
    export_in_process(objective_run, chosen, output)
    metadata = json.loads((output / "heretic.json").read_text(encoding="utf-8"))
    assert metadata["evaluation"]["model"] == evaluation["trials"][str(chosen)]
    card = (output / "README.md").read_text(encoding="utf-8")
    assert "## Benchmarks" in card and "| pick_first | acc | 6 |" in card

    out = evaluate([str(output), "--tasks", "pick_second", "--include-path", str(tmp_path)], capsys)
    assert out.splitlines()[0] == "| task | metric | original | export | stderr |"
    metadata = json.loads((output / "heretic.json").read_text(encoding="utf-8"))
    assert set(metadata["evaluation"]["model"]) == {"pick_first", "pick_second"}
    assert set(metadata["evaluation"]["original"]) == {"pick_first", "pick_second"}
    first, second = (metadata["evaluation"]["original"][task]["metrics"]["acc"]
                     for task in ("pick_first", "pick_second"))
    assert first + second == pytest.approx(1.0), "the source model (demo) answered both tasks"
    card = (output / "README.md").read_text(encoding="utf-8")
    assert "| pick_first | acc | 6 |" in card and "| pick_second | acc | 6 |" in card


def test_weights_and_hooks_give_a_trial_the_same_capability_score(objective_run: Path) -> None:
    """The search scored its trials through hooks; the same trial in the weights scores the same (a near tie of
    two options may flip one question's answer within float tolerance, no more)."""
    from types import SimpleNamespace

    from heretic_tui.core.abliteration.ablation import Abliterator, TrialParameters
    from heretic_tui.core.abliteration.activation_ablation import ActivationAblation
    from heretic_tui.core.abliteration.direction_set import DirectionSet
    from heretic_tui.core.capability.objective import score_applied_trial, score_hooked_trials
    from heretic_tui.core.models.loading import load_model

    study = read_study(objective_run)
    trial = completed_trials(study)[-1]
    parameters = TrialParameters.from_flat(trial.user_attrs["parameters"])
    settings = OptimizationSettings(capability_objective=True, capability_objective_questions=QUESTIONS)
    loaded = load_model(Settings().model)
    directions = DirectionSet.read(objective_run / "directions.safetensors")[0]
    evaluator = SimpleNamespace(loaded=loaded, batch_size=8)
    hooked = score_hooked_trials(study, settings, SimpleNamespace(
        ablation=ActivationAblation(loaded.model, directions), evaluator=evaluator), [parameters])
    assert hooked == [trial.values[2]]
    abliterator = Abliterator(loaded.model, directions)
    abliterator.apply(parameters)
    try:
        weights = score_applied_trial(study, settings, evaluator)
    finally:
        abliterator.reset()
    assert weights is not None and abs(weights - trial.values[2]) <= 1 / QUESTIONS + 1e-9


def test_the_dashboard_state_and_the_trial_table_show_each_trials_capability(objective_run: Path) -> None:
    """Rebuilt from the run's real journal: every finished trial has its score, the table gets its column."""
    import asyncio

    from textual.app import App, ComposeResult

    from heretic_tui.core.runs.run_directory import RunDirectory
    from heretic_tui.tui.run_state import RunState
    from heretic_tui.tui.widgets.trial_table import CAPABILITY_COLUMN, TrialTable

    state = RunState.from_events(RunDirectory(objective_run).read_events())
    scores = {trial.number: trial.values[2] for trial in completed_trials(read_study(objective_run))}
    assert {row.number: row.capability for row in state.finished_trials} == scores
    report = json.loads((objective_run / "report.json").read_text(encoding="utf-8"))
    assert state.pareto == report["pareto"]

    class TableApp(App[None]):
        def compose(self) -> ComposeResult:
            yield TrialTable()

    async def show() -> None:
        app = TableApp()
        async with app.run_test():
            table = app.query_one(TrialTable)
            assert not table.shows_capability
            table.show(list(state.trials.values()), set(state.pareto), report["chosen_trial"])
            assert table.shows_capability
            column = list(table.columns).index(CAPABILITY_COLUMN[0])
            for number, score in scores.items():
                assert str(table.get_row(str(number))[column]) == f"{score:.0%}"
            sorted_by = [table.cycle_sort() for _ in range(6)]
            assert CAPABILITY_COLUMN[0] in sorted_by
            while table.sort_key != CAPABILITY_COLUMN[0]:
                table.cycle_sort()
            assert "Capability" in str(table.border_subtitle)

    asyncio.run(show())
