"""K trials in shared forward passes give what the K trials give one by one: the same responses, so the same
refusals, and the same first-token KL; and one by one through hooks gives what edited weights give."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from heretic_tui.core.abliteration.ablation import Abliterator, TrialParameters
from heretic_tui.core.abliteration.activation_ablation import ActivationAblation
from heretic_tui.core.abliteration.batched_evaluation import BatchedEvaluator, choose_trial_batch
from heretic_tui.core.abliteration.builtin_prompts import builtin_prompts
from heretic_tui.core.abliteration.directions import compute_directions
from heretic_tui.core.abliteration.evaluation import Evaluator
from heretic_tui.core.abliteration.methods import MethodChoices
from heretic_tui.core.abliteration.job import start_abliteration
from heretic_tui.core.abliteration.study import read_study, suggest_parameters
from heretic_tui.core.models.chat_template import format_chat
from heretic_tui.core.models.loading import LoadedModel, load_model
from heretic_tui.core.models.residuals import last_token_residuals
from heretic_tui.core.runs.events import Metrics, TrialFinished
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import AbliterationSettings, ModelSettings, Settings
from optuna.trial import TrialState

BATCH_SIZE = 4


@pytest.fixture(scope="module")
def demo() -> tuple[LoadedModel, Evaluator, torch.Tensor]:
    loaded = load_model(ModelSettings(model="demo", dtypes=["float32"]), log=lambda message: None)
    harmful = format_chat(loaded.tokenizer, "", builtin_prompts("harmful", "train")[:16])
    harmless = format_chat(loaded.tokenizer, "", builtin_prompts("harmless", "train")[:16])
    directions = compute_directions(last_token_residuals(loaded, harmful, 8), last_token_residuals(loaded, harmless, 8))
    evaluator = Evaluator(loaded, format_chat(loaded.tokenizer, "", builtin_prompts("harmless", "test")[:10]),
                          format_chat(loaded.tokenizer, "", builtin_prompts("harmful", "test")[:10]), BATCH_SIZE,
                          AbliterationSettings())
    return loaded, evaluator, directions


def sampled_trials(layers: int, count: int) -> list[TrialParameters]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    methods = MethodChoices(ablation_method="search", edited_components="search")
    return [suggest_parameters(study.ask(), layers, methods) for _ in range(count)]


def test_a_batch_of_trials_scores_like_the_trials_one_by_one(demo: tuple[LoadedModel, Evaluator, torch.Tensor]) -> None:
    loaded, evaluator, directions = demo
    trials = sampled_trials(directions.shape[0], 5)
    batched = BatchedEvaluator(evaluator, ActivationAblation(loaded.model, directions))

    together_kl = batched.kl(batched.ablation.prepare(trials))
    together = batched.generate(batched.ablation.prepare(trials))
    alone_kl, alone = [], []
    for parameters in trials:
        single = batched.ablation.prepare([parameters])
        alone_kl.extend(batched.kl(single))
        alone.extend(batched.generate(single))
    weights_kl, weights = [], []
    abliterator = Abliterator(loaded.model, directions)
    for parameters in trials:
        abliterator.apply(parameters)
        weights_kl.append(evaluator.kl())
        weights.append(evaluator.generate())
        abliterator.reset()

    assert together == alone
    assert together == weights
    refusals = [evaluator.count(evaluator.score(responses)) for responses in together]
    assert len(set(refusals)) > 1, f"the trials should differ in refusals, not all {refusals}"
    assert together_kl == pytest.approx(alone_kl, rel=1e-4, abs=1e-6)
    assert together_kl == pytest.approx(weights_kl, rel=1e-3, abs=1e-5)


def test_the_automatic_trial_batch_is_bounded_and_a_set_value_is_kept(
        demo: tuple[LoadedModel, Evaluator, torch.Tensor]) -> None:
    loaded, evaluator, directions = demo
    batched = BatchedEvaluator(evaluator, ActivationAblation(loaded.model, directions))
    sample = sampled_trials(directions.shape[0], 1)[0]
    assert choose_trial_batch(3, batched, sample, lambda message: None) == 3
    messages: list[str] = []
    chosen = choose_trial_batch(0, batched, sample, messages.append)
    assert 1 <= chosen <= 8 and "trials per forward pass" in messages[0]


def test_an_abliteration_run_asks_trials_in_batches_and_tells_each(tmp_path: Path) -> None:
    """Six trials at four per pass: the four random trials in one batch, then the two guided ones one by one
    (TPE has seen too little to batch them, see search_plan.trials_to_ask); every trial is told with its own result
    and the dashboard's search metrics carry K."""
    settings = Settings()
    settings.prompts.max_direction_prompts = 16
    settings.prompts.max_eval_prompts = 8
    settings.abliteration.refusal_max_tokens = 8
    settings.abliteration.trial_batch = 4
    settings.optimization.trials = 6
    run_dir = tmp_path / "run"
    handle = start_abliteration(settings, run_dir)
    assert handle.wait(timeout=600) == 0, handle.run.log_path.read_text(encoding="utf-8")

    study = read_study(run_dir)
    completed = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    assert len(completed) == 6 and len(study.trials) == 6
    assert sorted(trial.user_attrs["trial_batch"] for trial in completed) == [1, 1, 4, 4, 4, 4]
    assert len({tuple(sorted(trial.params.items())) for trial in completed}) == 6
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["trial_batch"] == 4 and len(report["trials"]) == 6
    events = RunDirectory(run_dir).read_events()
    assert [event.values["trial_batch"] for event in events if isinstance(event, Metrics) and event.name == "search"] == [4]
    assert sorted(event.number for event in events if isinstance(event, TrialFinished)) == list(range(6))


def test_the_dashboard_header_says_how_many_trials_share_a_pass() -> None:
    from heretic_tui.tui.screens.abliteration_dashboard import search_description

    search = {"random_trials": 4, "guided_trials": 6, "sampler": "TPE"}
    assert search_description({**search, "trial_batch": 4}) == "4 random, then TPE, 4 trials per pass"
    assert search_description({**search, "trial_batch": 1}) == "4 random, then TPE"


def test_trials_share_passes_by_default_and_edited_weights_keep_one_per_pass() -> None:
    from heretic_tui.core.errors import UserInputError
    from heretic_tui.core.settings import settings_from_dict

    assert Settings().abliteration.trial_batch == 0, "the default picks K from free memory"
    assert settings_from_dict({"abliteration": {"apply": "weights"}}).abliteration.trial_batch == 0
    with pytest.raises(UserInputError, match="trial_batch' \\(4\\) needs abliteration.apply"):
        settings_from_dict({"abliteration": {"apply": "weights", "trial_batch": 4}})
