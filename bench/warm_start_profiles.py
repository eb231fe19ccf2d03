"""Measure a warm-start profile for the Llama family on the Llama-architecture toys the project builds itself.

The two toys are the demo model (4 layers, refusal trained into the whole model) and the test suite's
late-refusal model (6 layers, refusal only in an added last layer: tests/model_factory.py), so they differ in
depth and in where refusal lives. The method benchmark's held-out toys (bench/toy_models.py) are not used: they
judge the defaults, and a profile tuned on them would be tuned on the exam.

1. A cold search of ``--trials`` trials on each toy (the real abliteration job, warm start off).
2. From each, the ``--per-toy`` trials with the fewest refusals, then the lowest KL, in layer fractions.
3. Every candidate is run on both toys (again the real job: a profile of the candidates, one trial each).
4. Printed: a profile of the candidates that stay at or under ``--most-refusals`` of the harmful evaluation prompts
   and ``--largest-kl`` on both toys, each with its measurements in a comment. Nothing is written unless
   ``--write`` names a file; a candidate that does not carry over is left out, and with none left no profile is
   printed.

    XDG_CACHE_HOME=.test-cache python bench/warm_start_profiles.py [--trials 40] [--write core/.../llama.toml]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from heretic_tui.core.abliteration.job import start_abliteration  # noqa: E402
from heretic_tui.core.abliteration.warm_start import WarmTrial  # noqa: E402
from heretic_tui.core.models.demo import ensure_demo_model, ensure_toy_model  # noqa: E402
from heretic_tui.core.settings import Settings  # noqa: E402


def toys() -> dict[str, Path]:
    from model_factory import late_refusal_recipe

    return {"demo-model": ensure_demo_model(), "late-refusal-model": ensure_toy_model(late_refusal_recipe())}


def run(model: Path, folder: Path, trials: int, profile: Path | None = None) -> dict[str, Any]:
    settings = Settings()
    settings.model.model = str(model)
    settings.prompts.good_prompts, settings.prompts.bad_prompts = "builtin:harmless@train", "builtin:harmful@train"
    settings.prompts.good_eval_prompts = "builtin:harmless@test"
    settings.prompts.bad_eval_prompts = "builtin:harmful@test"
    settings.optimization.trials = trials
    settings.optimization.warm_start_profile = str(profile) if profile else "none"
    settings.optimization.warm_start_trials = trials if profile else 0
    handle = start_abliteration(settings, folder)
    if handle.wait(timeout=3600) != 0:
        raise SystemExit(handle.run.log_path.read_text(encoding="utf-8")[-3000:])
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def layer_count(model: Path) -> int:
    return int(json.loads((model / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])


def trial_toml(trial: WarmTrial, comment: list[str]) -> str:
    lines = ["", *[f"# {line}" for line in comment], "[[trials]]", f'direction_scope = "{trial.direction_scope}"',
             f"direction_layer = {trial.direction_layer:.4f}"]
    for component, kernel in trial.kernels.items():
        values = ", ".join(f"{key} = {value:.4f}" for key, value in kernel.items())
        lines.append(f"{component} = {{ {values} }}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--per-toy", type=int, default=2)
    parser.add_argument("--most-refusals", type=float, default=0.02)
    parser.add_argument("--largest-kl", type=float, default=0.1)
    parser.add_argument("--write", type=Path)
    arguments = parser.parse_args()
    models = toys()
    work = Path(tempfile.mkdtemp(prefix="warm-start-profiles-"))
    candidates: list[tuple[str, int, WarmTrial]] = []
    for name, model in models.items():
        report = run(model, work / f"search-{name}", arguments.trials)
        best = sorted(report["trials"], key=lambda item: (item["refusals"], item["kl"]))[:arguments.per_toy]
        for item in best:
            print(f"{name}: trial {item['number']} refusals {item['refusals']}/{report['baseline']['total']} "
                  f"(baseline {report['baseline']['refusals']}) kl {item['kl']:.4f}", flush=True)
            candidates.append((name, item["number"], WarmTrial.from_flat(item["params"], layer_count(model))))
    profile = work / "candidates.toml"
    profile.write_text('model_types = ["llama"]\n' + "".join(trial_toml(trial, []) for _, _, trial in candidates),
                       encoding="utf-8")
    measured: dict[int, list[str]] = {index: [] for index in range(len(candidates))}
    carries = {index: True for index in range(len(candidates))}
    for name, model in models.items():
        report = run(model, work / f"check-{name}", len(candidates), profile)
        total = report["baseline"]["total"]
        for index, item in enumerate(sorted(report["trials"], key=lambda entry: entry["number"])):
            measured[index].append(f"{name}: {item['refusals']}/{total} refusals (baseline "
                                   f"{report['baseline']['refusals']}), KL {item['kl']:.4f}")
            if item["refusals"] > arguments.most_refusals * total or item["kl"] > arguments.largest_kl:
                carries[index] = False
    kept = [index for index in range(len(candidates)) if carries[index]]
    for index, (name, number, _) in enumerate(candidates):
        print(f"candidate {index} (trial {number} of {name}): {'kept' if carries[index] else 'dropped'}; "
              + "; ".join(measured[index]))
    if not kept:
        print("no candidate carries over to both toys: no profile")
        return
    header = [
        "# Warm-start profile for the Llama family (model type llama), measured by bench/warm_start_profiles.py",
        f"# on {platform.machine()} CPU: a cold search of {arguments.trials} trials on each of heretic-tui's own",
        "# Llama-architecture toys (the demo model, 4 layers; the late-refusal test model, 6 layers), the best",
        f"# {arguments.per_toy} trials of each in layer fractions, kept when they reach "
        f"<= {arguments.most_refusals:.0%} refusals at KL <= {arguments.largest_kl}",
        "# on both toys. Measured on toys only, not on a released Llama checkpoint: a real model's best trials may",
        "# differ, which the search then finds; these only start it.",
        f"# Reproduce: XDG_CACHE_HOME=.test-cache python bench/warm_start_profiles.py --trials {arguments.trials} "
        "--write <this file>",
        'model_types = ["llama"]',
    ]
    text = "\n".join(header) + "\n" + "".join(
        trial_toml(candidates[index][2], [f"from trial {candidates[index][1]} of the {candidates[index][0]} search; "
                                          "measured:", *measured[index]]) for index in kept)
    print(text)
    if arguments.write:
        arguments.write.parent.mkdir(parents=True, exist_ok=True)
        arguments.write.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
