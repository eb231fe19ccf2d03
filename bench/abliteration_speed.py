"""How much a trial costs beyond its forward passes, measured side by side in one run.

For each trial the real pipeline code runs (sample, apply, KL pass, refusal generation, reset, record); right after
it, the same trial's parameters are applied once more and the bare evaluation (the KL pass and the refusal
generation alone) is timed. Printed: medians of per-trial time, apply+reset time, bare evaluation time, and the
ratios the project targets (trial / bare evaluation <= 1.3, apply+reset <= 5% of a trial).

    python bench/abliteration_speed.py [--model demo] [--trials 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from heretic_tui.core.abliteration.ablation import Abliterator, TrialParameters  # noqa: E402
from heretic_tui.core.abliteration.job import load_all_prompts, run_trial  # noqa: E402
from heretic_tui.core.abliteration.directions import compute_directions  # noqa: E402
from heretic_tui.core.abliteration.evaluation import Evaluator  # noqa: E402
from heretic_tui.core.atomic_files import write_json_atomically  # noqa: E402
from heretic_tui.core.runs.run_directory import RunDirectory  # noqa: E402
from heretic_tui.core.models.batch_size import choose_batch_size  # noqa: E402
from heretic_tui.core.models.chat_template import format_chat  # noqa: E402
from heretic_tui.core.models.loading import load_model  # noqa: E402
from heretic_tui.core.models.residuals import last_token_residuals  # noqa: E402
from heretic_tui.core.abliteration.study import open_study  # noqa: E402
from heretic_tui.core.settings import load_settings, overrides_from_text  # noqa: E402
from heretic_tui.core.runs.worker import JobContext  # noqa: E402


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    low = ordered[max(0, int(len(ordered) * 0.1))]
    high = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(values):8.4f}   p10 {low:8.4f}   p90 {high:8.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--trials", type=int, default=30)
    arguments = parser.parse_args()
    settings = load_settings(None, environ={}, search_default_paths=False,
                             overrides=overrides_from_text({"model.model": arguments.model,
                                                            "optimization.trials": str(arguments.trials),
                                                            "optimization.startup_trials": "10"}))
    loaded = load_model(settings.model)
    prompts = load_all_prompts(settings)
    system = settings.prompts.system_prompt
    harmful_eval = format_chat(loaded.tokenizer, system, prompts["bad_eval_prompts"])
    harmless_eval = format_chat(loaded.tokenizer, system, prompts["good_eval_prompts"])
    batch_size = choose_batch_size(loaded, harmful_eval, settings.model, log=lambda message: None)
    harmful = last_token_residuals(loaded, format_chat(loaded.tokenizer, system, prompts["bad_prompts"]), batch_size)
    harmless = last_token_residuals(loaded, format_chat(loaded.tokenizer, system, prompts["good_prompts"]), batch_size)
    abliterator = Abliterator(loaded.model, compute_directions(harmful, harmless))
    evaluator = Evaluator(loaded, harmless_eval, harmful_eval, batch_size, settings.abliteration)

    with tempfile.TemporaryDirectory() as folder:
        run = RunDirectory(Path(folder))
        write_json_atomically(run.job_path, {"kind": "abliterate", "arguments": {}})
        context = JobContext(run, settings, {})
        study = open_study(run.path, settings.optimization, log=lambda message: None)
        trial_times, apply_times, bare_times = [], [], []
        for _ in range(arguments.trials):
            result = run_trial(context, study, abliterator, evaluator, arguments.trials)
            abliterator.apply(TrialParameters.from_flat(result.params))
            started = time.perf_counter()
            evaluator.kl()
            evaluator.refusals()
            bare_times.append(time.perf_counter() - started)
            abliterator.reset()
            trial_times.append(result.seconds)
            apply_times.append(result.apply_reset_seconds)
        context.close()

    ratios = [trial / bare for trial, bare in zip(trial_times, bare_times)]
    shares = [apply / trial for apply, trial in zip(apply_times, trial_times)]
    print(f"model {arguments.model} ({loaded.dtype} on {loaded.device}), batch size {batch_size}, "
          f"{len(harmful_eval)} harmful + {len(harmless_eval)} harmless eval prompts, {arguments.trials} trials")
    print(f"trial seconds            {quantiles(trial_times)}")
    print(f"apply+reset seconds      {quantiles(apply_times)}")
    print(f"bare evaluation seconds  {quantiles(bare_times)}")
    print(f"trial / bare evaluation  {quantiles(ratios)}   (target <= 1.3)")
    print(f"apply+reset / trial      {quantiles(shares)}   (target <= 0.05)")


if __name__ == "__main__":
    main()
