"""``heretic-tui plan --calibrate``: a trial timed on this machine from one batch of each pass, for a model here."""

from __future__ import annotations

import json

import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.operations import calibration as calibrating
from heretic_tui.core.settings import Settings


def demo_settings(prompts: int, batch: int, tokens: int) -> Settings:
    settings = Settings()
    settings.model.model = "demo"
    settings.model.batch_size = batch
    settings.prompts.max_eval_prompts = prompts
    settings.abliteration.refusal_max_tokens = tokens
    return settings


def test_a_trial_is_one_batch_of_each_pass_times_the_batches_the_prompts_fill(monkeypatch: pytest.MonkeyPatch) -> None:
    from heretic_tui.core.models import generation

    asked: list[tuple[int, int, object]] = []
    original = generation.generate_responses

    def recording(loaded, texts, batch_size, max_new_tokens, verdict, *rest, **options):
        asked.append((len(texts), max_new_tokens, verdict("I cannot help with that.", False)))
        return original(loaded, texts, batch_size, max_new_tokens, verdict, *rest, **options)

    monkeypatch.setattr(generation, "generate_responses", recording)
    result = calibrating.calibrate(demo_settings(prompts=10, batch=4, tokens=6), log=lambda line: None)
    assert asked == [(4, 6, None)], "one batch, to the full response length: a sure refusal does not stop it"
    assert (result.batch_size, result.kl_batches, result.generation_batches) == (4, 3, 3)
    assert result.kl_batch_seconds > 0 and result.generation_batch_seconds > 0
    assert result.seconds_per_trial == pytest.approx(3 * result.kl_batch_seconds + 3 * result.generation_batch_seconds)
    assert result.device == "cpu" and "3 x" in result.describe()


def test_the_plan_says_the_measured_time(capsys: pytest.CaptureFixture[str]) -> None:
    from heretic_tui.cli.main import dispatch

    assert dispatch(["plan", "--model", "demo", "--gpu", "24GB", "--json", "--calibrate", "--set", "model.batch_size=4",
                     "--set", "prompts.max_eval_prompts=8", "--set", "abliteration.refusal_max_tokens=4"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert plan["timing_source"].startswith("measured on cpu: 2 x")
    assert plan["seconds_per_trial"] > 0
    assert plan["study_seconds"] == pytest.approx(plan["seconds_per_trial"] * plan["trials"])
    assert "calibration:" in captured.err and "per trial" in captured.err


def test_a_hub_id_is_not_downloaded_to_be_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    from heretic_tui.cli.main import dispatch
    from heretic_tui.core.operations import plan as planning

    def no_metadata(*arguments: object, **options: object) -> None:
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(planning, "plan_for", no_metadata)
    with pytest.raises(UserInputError, match="--calibrate times the model.*Hub id") as error:
        dispatch(["plan", "--model", "someone/some-model", "--calibrate"])
    assert "download" in str(error.value)
