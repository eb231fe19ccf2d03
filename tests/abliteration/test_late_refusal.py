"""The search reaches every layer: on a toy model whose refusal lives only in its last layer, the default search
removes (nearly) every refusal at a small KL divergence within 30 trials.

The model is trained here like the demo model (tests/model_factory.py: late_refusal_recipe) and cached in the
suite's shared cache, so CI builds it once (about a minute on two cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heretic_tui.core.abliteration.ablation import TrialParameters
from heretic_tui.core.abliteration.job import start_abliteration
from heretic_tui.core.settings import Settings
from model_factory import late_refusal_recipe

TRIALS = 30
MOST_REFUSALS = 0.02
"""Near zero: at most 2 of 100 evaluation prompts still refused."""
LARGEST_KL = 0.1
"""Small: removing this model's refusal at all costs about 0.05 (its last layer also shapes harmless answers)."""


@pytest.fixture(scope="module")
def late_refusal_model() -> Path:
    from shared_cache import SHARED_CACHE

    from heretic_tui.core.models.demo import ensure_toy_model

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(SHARED_CACHE))
        return ensure_toy_model(late_refusal_recipe())


@pytest.mark.slow
def test_the_default_search_removes_a_refusal_that_lives_in_the_last_layer(late_refusal_model: Path,
                                                                            tmp_path: Path) -> None:
    settings = Settings()
    settings.model.model = str(late_refusal_model)
    settings.prompts.good_prompts, settings.prompts.bad_prompts = "builtin:harmless@train", "builtin:harmful@train"
    settings.prompts.good_eval_prompts = "builtin:harmless@test"
    settings.prompts.bad_eval_prompts = "builtin:harmful@test"
    settings.optimization.trials = TRIALS
    settings.optimization.warm_start_profile = "none"  # the cold search is under test (the llama profile was
    # measured on this model)
    handle = start_abliteration(settings, tmp_path / "run")
    assert handle.wait(timeout=1200) == 0, handle.run.log_path.read_text(encoding="utf-8")

    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    total = report["baseline"]["total"]
    assert report["baseline"]["refusals"] >= 0.85 * total, report["baseline"]
    assert len(report["trials"]) == TRIALS
    good = [trial for trial in report["trials"]
            if trial["refusals"] <= MOST_REFUSALS * total and trial["kl"] <= LARGEST_KL]
    best = sorted((trial["refusals"], round(trial["kl"], 4)) for trial in report["trials"])[:5]
    assert good, f"no trial reached <= {MOST_REFUSALS:.0%} refusals at KL <= {LARGEST_KL}; best: {best}"
    last_layer = 5
    for trial in good:
        parameters = TrialParameters.from_flat(trial["params"])
        assert any(kernel.weight(last_layer) > 0 for kernel in parameters.kernels.values()), trial
