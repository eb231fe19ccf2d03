"""Warm start: profile and front trials are the study's first trials, fit any depth, and are never repeated."""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
import platformdirs
import pytest
import torch
from safetensors.torch import save_file

from heretic_tui.core.abliteration.ablation import TrialParameters
from heretic_tui.core.abliteration.study import ask_untried, open_study
from heretic_tui.core.abliteration.warm_start import (
    SOURCE_ATTRIBUTE,
    WarmTrial,
    enqueue_warm_start,
    parse_profile,
    plan_warm_start,
    shipped_profiles,
)
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import APP_NAME, OptimizationSettings

PROFILE = """
# Hand-made for this test.
model_types = ["toyfamily"]

[[trials]]
direction_scope = "per_layer"
direction_layer = 0.5
attention = { max_weight = 1.2, peak_layer = 0.75, min_weight_fraction = 0.5, min_weight_distance = 0.25 }
mlp = { max_weight = 0.9, peak_layer = 1.0, min_weight_fraction = 0.0, min_weight_distance = 0.5 }

[[trials]]
direction_scope = "global"
direction_layer = 0.9
attention = { max_weight = 1.0, peak_layer = 0.5, min_weight_fraction = 1.0, min_weight_distance = 0.1 }
mlp = { max_weight = 1.4, peak_layer = 0.25, min_weight_fraction = 0.2, min_weight_distance = 0.3 }
"""


def write_user_profile(text: str = PROFILE) -> Path:
    folder = Path(platformdirs.user_config_dir(APP_NAME)) / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "toyfamily.toml"
    path.write_text(text, encoding="utf-8")
    return path


def new_study(path: Path, settings: OptimizationSettings) -> optuna.Study:
    path.mkdir(parents=True, exist_ok=True)
    return open_study(path, settings)


def finish(study: optuna.Study, trial: optuna.Trial, parameters: TrialParameters, kl: float, refusals: int) -> None:
    trial.set_user_attr("parameters", parameters.to_flat())
    study.tell(trial, [kl, refusals])


def test_profile_trials_come_first_in_layer_fractions_and_a_resume_never_repeats_them(tmp_path: Path) -> None:
    path = write_user_profile()
    settings = OptimizationSettings()
    plan = plan_warm_start(settings, ["toyfamily"])
    assert plan.sources == [f"{path} (model type toyfamily)"]
    study = new_study(tmp_path / "run", settings)
    assert enqueue_warm_start(study, plan, layer_count=13, trial_budget=10) == 2

    asked = [ask_untried(study, 13) for _ in range(3)]
    first, second, third = (parameters for _, parameters in asked)
    assert (first.direction_scope, first.direction_index) == ("per_layer", pytest.approx(6.0))
    assert first.kernels["attention"].max_weight == pytest.approx(1.2)
    assert first.kernels["attention"].max_weight_position == pytest.approx(9.0)
    assert first.kernels["attention"].min_weight == pytest.approx(0.6)
    assert first.kernels["attention"].min_weight_distance == pytest.approx(3.0)
    assert first.kernels["mlp"].max_weight_position == pytest.approx(12.0)
    assert (second.direction_scope, second.direction_index) == ("global", pytest.approx(0.9 * 12))
    assert second.kernels["mlp"].max_weight_position == pytest.approx(3.0)
    assert [trial.number for trial, _ in asked] == [0, 1, 2]
    assert [SOURCE_ATTRIBUTE in study.trials[number].user_attrs for number in range(3)] == [True, True, False]
    for index, (trial, parameters) in enumerate(asked):
        finish(study, trial, parameters, 0.1 * index, index)

    resumed = open_study(tmp_path / "run", settings)
    assert enqueue_warm_start(resumed, plan, layer_count=13, trial_budget=10) == 0
    assert len(resumed.trials) == 3


def test_warm_start_trials_count_toward_the_budget(tmp_path: Path) -> None:
    write_user_profile()
    plan = plan_warm_start(OptimizationSettings(), ["toyfamily"])
    study = new_study(tmp_path / "run", OptimizationSettings())
    assert enqueue_warm_start(study, plan, layer_count=8, trial_budget=1) == 1
    assert enqueue_warm_start(study, plan, layer_count=8, trial_budget=1) == 0
    settings = OptimizationSettings()
    settings.warm_start_trials = 1
    assert len(plan_warm_start(settings, ["toyfamily"]).trials) == 1


def test_another_runs_front_starts_a_model_of_another_depth(tmp_path: Path) -> None:
    source = tmp_path / "source"
    study = new_study(source, OptimizationSettings())
    outcomes = [(0.05, 3), (0.5, 0), (0.9, 5)]
    for kl, refusals in outcomes:
        trial, parameters = ask_untried(study, 12)
        finish(study, trial, parameters, kl, refusals)
    save_file({"directions": torch.zeros(12, 4)}, str(source / "directions.safetensors"))
    front = [trial for trial in study.trials if trial.values[1] in (0, 3)]

    settings = OptimizationSettings()
    settings.warm_start_run = str(source)
    settings.warm_start_profile = "none"
    plan = plan_warm_start(settings, ["llama"])
    assert len(plan.trials) == 2 and "Pareto front" in plan.sources[0]
    target = new_study(tmp_path / "target", settings)
    assert enqueue_warm_start(target, plan, layer_count=23, trial_budget=10) == 2
    carried = [ask_untried(target, 23)[1] for _ in range(2)]
    originals = [TrialParameters.from_flat(trial.user_attrs["parameters"])
                 for trial in sorted(front, key=lambda item: item.values[1])]
    for original, copy in zip(originals, carried):
        assert copy.direction_scope == original.direction_scope
        assert copy.direction_index / 22 == pytest.approx(original.direction_index / 11)
        for component, kernel in original.kernels.items():
            assert copy.kernels[component].max_weight_position / 22 == pytest.approx(kernel.max_weight_position / 11)
            assert copy.kernels[component].max_weight == pytest.approx(kernel.max_weight)
            assert copy.kernels[component].min_weight == pytest.approx(kernel.min_weight)


def test_an_unknown_family_starts_cold_and_says_so() -> None:
    write_user_profile()
    plan = plan_warm_start(OptimizationSettings(), ["someotherfamily"])
    assert plan.trials == [] and plan.sources == []
    assert "no profile for model type someotherfamily" in plan.describe(0)
    assert "starts cold" in plan.describe(0)


@pytest.mark.parametrize("text, named", [
    ("model_types = [\"x\"]\n[[trials]]\ndirection_scope = \"sideways\"\n", "direction_scope is 'sideways'"),
    (PROFILE.replace("direction_layer = 0.5", "direction_layer = 5"), "direction_layer is 5"),
    ("model_types = [\"x\"]\n", "has no [[trials]]"),
    ("model_types = [\n", "is not valid TOML"),
])
def test_a_broken_profile_is_bad_input_naming_the_file_and_key(text: str, named: str) -> None:
    path = write_user_profile(text)
    with pytest.raises(UserInputError, match=str(path)) as raised:
        plan_warm_start(OptimizationSettings(), ["toyfamily"])
    assert named in str(raised.value)


def test_a_named_profile_or_run_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    settings = OptimizationSettings()
    settings.warm_start_profile = str(tmp_path / "missing.toml")
    with pytest.raises(UserInputError, match="warm_start_profile"):
        plan_warm_start(settings, ["llama"])
    settings = OptimizationSettings()
    settings.warm_start_run = str(tmp_path)
    with pytest.raises(UserInputError, match="directions.safetensors"):
        plan_warm_start(settings, ["llama"])


def test_every_shipped_profile_parses_and_says_where_it_was_measured() -> None:
    for name, text in shipped_profiles():
        types, trials = parse_profile(text, name)
        assert types and trials
        assert "measured" in text.lower(), f"{name} does not say where its values were measured"
        for trial in trials:
            assert isinstance(trial, WarmTrial)


def test_the_warm_start_flag_sets_the_setting(tmp_path: Path) -> None:
    from heretic_tui.cli.arguments import settings_from_arguments
    from heretic_tui.cli.commands import abliterate

    parser = argparse.ArgumentParser()
    abliterate.add_arguments(parser)
    arguments = parser.parse_args(["--warm-start", str(tmp_path)])
    assert settings_from_arguments(arguments).optimization.warm_start_run == str(tmp_path)


def test_a_warm_start_run_that_is_not_a_run_stops_the_start_before_a_run_folder_is_made(tmp_path: Path) -> None:
    from heretic_tui.core.abliteration.job import start_abliteration
    from heretic_tui.core.settings import Settings

    settings = Settings()
    settings.model.model = "demo"
    settings.optimization.warm_start_run = str(tmp_path / "no-such-run")
    with pytest.raises(UserInputError, match="warm_start_run = .*no-such-run.* is not a folder"):
        start_abliteration(settings, tmp_path / "run")
    assert not (tmp_path / "run").exists()
