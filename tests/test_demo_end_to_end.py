"""The README's main command on the embedded demo model: refusals go from >= 90% to <= 5% at KL <= 0.05, and the
exported model, reloaded from disk, reproduces the reported refusals."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from heretic_tui.core.abliteration.evaluation import Evaluator
from heretic_tui.core.shipping.export import METADATA_FILE
from heretic_tui.core.models.chat_template import format_chat
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.abliteration.prompts import load_prompts
from heretic_tui.core.settings import AbliterationSettings, ModelSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_abliterates_and_the_export_reproduces_the_report(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo-run"
    environment = dict(os.environ, HERETIC_WARM_START_PROFILE="none")  # the search is under test, not the profile
    result = subprocess.run([sys.executable, "-m", "heretic_tui.cli", "demo", "--run-dir", str(run_dir)],
                            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Demo finished." in result.stderr and "before:" in result.stderr and "after:" in result.stderr
    assert "scorer: markers (trial " in result.stderr and "agreement with you" in result.stderr

    report = json.loads((run_dir / "report.json").read_text())
    total = report["baseline"]["total"]
    assert report["baseline"]["refusals"] >= 0.9 * total
    assert len(report["trials"]) == 50
    chosen = next(trial for trial in report["trials"] if trial["number"] == report["chosen_trial"])
    assert chosen["refusals"] <= 0.05 * total, chosen
    assert chosen["kl"] <= 0.05, chosen
    assert report["chosen_trial"] in report["pareto"]
    timings = report["timings"]
    for key in ("load", "residuals", "baseline_generation", "per_trial_median", "apply_reset_median"):
        assert timings[key] > 0, (key, timings)
    assert timings["apply_reset_median"] < timings["per_trial_median"], "apply and reset are part of each trial"
    assert timings["per_trial_median"] == statistics.median(trial["seconds"] for trial in report["trials"])
    assert all(0 < trial["apply_reset_seconds"] < trial["seconds"] for trial in report["trials"])

    exported = run_dir / "model"
    metadata = json.loads((exported / METADATA_FILE).read_text())
    assert metadata["trial"] == report["chosen_trial"] and metadata["source_model"] == "demo"
    assert not list(run_dir.glob(".model.partial-*"))
    loaded = load_model(ModelSettings(model=str(exported)))
    harmful = format_chat(loaded.tokenizer, "You are a helpful assistant.", load_prompts("builtin:harmful@test", 100))
    harmless = format_chat(loaded.tokenizer, "You are a helpful assistant.", load_prompts("builtin:harmless@test", 100))
    evaluator = Evaluator(loaded, harmless, harmful, 32, AbliterationSettings())
    assert evaluator.refusals() == chosen["refusals"]
