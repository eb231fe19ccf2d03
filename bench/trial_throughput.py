"""Trials per minute: one trial at a time (edited weights), K trials per forward pass (hooks), and Heretic 1.4.0.

Every configuration runs the real headless command (``heretic-tui abliterate --headless``) on the same model, the
same four prompt files, budget and seed; Heretic 1.4.0 runs on them too, from its own venv (bench/heretic_peer.py,
which installs ``heretic-llm`` there when it is missing). Trials per minute are read from each run's Optuna journal
the same way for both tools: completed trials over the time from the first trial's start to the last trial's
completion, so what each tool spends once (loading, directions, baseline, Heretic's batch-size search) is left out.
Each configuration runs ``--repeats`` times and the table shows the median and the range; the best KL at 0
refusals of each run is printed beside it, so a speed-up that costs quality shows.

The configurations:

- ``one at a time``: ``abliteration.apply = weights``, the weight edit and reset of every trial (as before hooks);
- ``hooks K=1`` ... ``hooks K=8``: ``abliteration.apply = hooks`` with ``trial_batch`` = K.

K is the most trials a pass holds: a study asks its random trials K at a time but its guided ones only as TPE has
seen enough results to spare them (``search_plan.trials_to_ask``: one per twenty completed trials, at most a
quarter of those left), so batching pays on long studies and hardly on short ones. The default budget (200
trials, the default study) lets the guided batches reach K = 8; at 30 trials every guided trial runs alone.

Run it alone on the machine: anything else running changes the numbers. ``--quick`` is a smoke run (a few trials,
one repeat, no Heretic) that checks every configuration completes; its speeds mean nothing.

    python bench/trial_throughput.py --quick
    python bench/trial_throughput.py                                   # qwen3-spread toy, CPU, 3 repeats
    python bench/trial_throughput.py --device cuda --no-heretic        # the GPU check (bench/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heretic_peer  # noqa: E402
from method_quality import best_kl, clean_environment, machine, prompt_files  # noqa: E402
from toy_models import TOYS_BY_NAME, prepare_toy  # noqa: E402

CREATE_TRIAL, SET_TRIAL_STATE_VALUES, TRIAL_COMPLETE = 4, 6, 1
"""Operation codes of Optuna's journal and the COMPLETE state (stable since Optuna 3; Heretic's venv has its own
Optuna, so the journal is read as text, not through either Optuna)."""

BATCHES = (1, 2, 4, 8)
DEFAULT_TRIALS = 200
"""The default study's length: long enough for the guided batches to grow to K = 8 (see the module docstring)."""


def configurations(batches: tuple[int, ...]) -> list[tuple[str, list[str]]]:
    found = [("one at a time", ["abliteration.apply=weights", "abliteration.trial_batch=1"])]
    found += [(f"hooks K={size}", ["abliteration.apply=hooks", f"abliteration.trial_batch={size}"]) for size in batches]
    return found


def trial_phase(journal: Path) -> tuple[int, float]:
    """(completed trials, seconds from the first trial's start to the last completion) from an Optuna journal."""
    starts: dict[int, datetime] = {}
    completions: dict[int, datetime] = {}
    trial_ids = 0
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            operation = json.loads(line)
        except json.JSONDecodeError:
            continue
        code = operation.get("op_code")
        if code == CREATE_TRIAL:
            if operation.get("datetime_start"):
                starts[trial_ids] = datetime.fromisoformat(operation["datetime_start"])
            trial_ids += 1
        elif code == SET_TRIAL_STATE_VALUES and operation.get("state") == TRIAL_COMPLETE:
            if operation.get("datetime_complete"):
                completions[operation["trial_id"]] = datetime.fromisoformat(operation["datetime_complete"])
    if not completions:
        return 0, 0.0
    first = min(starts[trial] for trial in completions if trial in starts)
    return len(completions), (max(completions.values()) - first).total_seconds()


def run_ours(model: Path, files: dict[str, Path], overrides: list[str], trials: int, seed: int, device: str,
             log_path: Path, environment: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="trial-throughput-") as folder:
        work = Path(folder)
        run_dir = work / "run"
        command = [sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", "--model", str(model),
                   "--good-prompts", str(files["good_prompts"]), "--bad-prompts", str(files["bad_prompts"]),
                   "--good-eval-prompts", str(files["good_eval_prompts"]),
                   "--bad-eval-prompts", str(files["bad_eval_prompts"]),
                   "--trials", str(trials), "--seed", str(seed), "--run-dir", str(run_dir),
                   "--set", f"model.device_map={device}"]
        for override in overrides:
            command += ["--set", override]
        with log_path.open("w", encoding="utf-8") as output:
            completed = subprocess.run(command, cwd=work, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, check=False,
                                       env={**environment, "XDG_CONFIG_HOME": str(work / "config")})
        report_path = run_dir / "report.json"
        if completed.returncode != 0 or not report_path.is_file():
            raise RuntimeError(f"our run failed (exit {completed.returncode}); see {log_path}")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        count, seconds = trial_phase(run_dir / "study.journal")
    return {"trials": report["trials"], "completed": count, "seconds": seconds,
            "trial_batch": report.get("trial_batch", 1)}


def run_heretic(model: Path, files: dict[str, Path], trials: int, seed: int, log_path: Path,
                environment: dict[str, str]) -> dict[str, Any]:
    from heretic_tui.core.settings import Settings

    defaults = Settings()
    with tempfile.TemporaryDirectory(prefix="trial-throughput-heretic-") as folder:
        journal = Path(folder) / "heretic.jsonl"
        outcome = heretic_peer.run_heretic(model, files, trials, seed, defaults.abliteration.refusal_markers,
                                           defaults.prompts.system_prompt, defaults.abliteration.refusal_max_tokens,
                                           log_path, environment=environment, keep_journal=journal)
        count, seconds = trial_phase(journal)
    return {"trials": outcome["trials"], "completed": count, "seconds": seconds, "trial_batch": 1}


def per_minute(result: dict[str, Any]) -> float:
    return 60.0 * result["completed"] / result["seconds"] if result["seconds"] > 0 else math.nan


def format_kl(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", default="qwen3-spread", choices=sorted(TOYS_BY_NAME))
    parser.add_argument("--model", help="another model folder, run on the toy's prompt files")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batches", default=",".join(str(size) for size in BATCHES))
    parser.add_argument("--device", default="cpu", help="model.device_map for our runs: cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both tools")
    parser.add_argument("--no-heretic", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 trials, one repeat, no Heretic")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.trials, arguments.repeats, arguments.no_heretic = 4, 1, True
    batches = tuple(int(item) for item in arguments.batches.split(",") if item.strip())

    toy = prepare_toy(TOYS_BY_NAME[arguments.toy])
    model = Path(arguments.model) if arguments.model else toy.model
    files = prompt_files(toy)
    environment = clean_environment()
    environment.update(OMP_NUM_THREADS=str(arguments.threads), MKL_NUM_THREADS=str(arguments.threads))
    runs: list[tuple[str, list[str] | None]] = list(configurations(batches))
    if not arguments.no_heretic:
        runs.append((f"heretic {heretic_peer.HERETIC_VERSION}", None))

    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="trial-throughput-logs-") as logs:
        for repeat in range(arguments.repeats):
            for name, overrides in runs:
                log_path = Path(logs) / f"{name.replace(' ', '_').replace('=', '')}-{repeat}.log"
                print(f"[{time.strftime('%H:%M:%S')}] {name}, run {repeat + 1}/{arguments.repeats} ...", flush=True)
                try:
                    if overrides is None:
                        result = run_heretic(model, files, arguments.trials, arguments.seed, log_path, environment)
                    else:
                        result = run_ours(model, files, overrides, arguments.trials, arguments.seed,
                                          arguments.device, log_path, environment)
                except RuntimeError as error:
                    print(f"    failed: {error}\n" + log_path.read_text(encoding="utf-8", errors="replace")[-3000:])
                    raise SystemExit(1) from None
                if result["completed"] != arguments.trials:
                    raise SystemExit(f"{name} completed {result['completed']} of {arguments.trials} trials")
                results.setdefault(name, []).append(result)
                print(f"    {per_minute(result):.1f} trials/min, best KL at 0 refusals "
                      f"{format_kl(best_kl(result['trials'], 0))}", flush=True)

    reference = statistics.median(per_minute(item) for item in results["one at a time"])
    heretic_name = next((name for name, overrides in runs if overrides is None), None)
    heretic = statistics.median(per_minute(item) for item in results[heretic_name]) if heretic_name else None
    print(f"\nTrials per minute on {model.name} ({arguments.device}, {arguments.threads} thread(s), "
          f"{arguments.trials} trials, median of {arguments.repeats}; {machine()})")
    print(f"{'configuration':<16} {'trials/min':>10} {'range':>17} {'x one-at-a-time':>16} {'x Heretic':>10} "
          f"{'best KL @0 (median)':>20}")
    for name, items in results.items():
        speeds = [per_minute(item) for item in items]
        median = statistics.median(speeds)
        kls = [best_kl(item["trials"], 0) for item in items]
        reached = [value for value in kls if value is not None]
        kl_text = format_kl(statistics.median(reached)) if len(reached) * 2 > len(kls) else "-"
        versus_heretic = f"{median / heretic:.2f}x" if heretic else "-"
        print(f"{name:<16} {median:>10.1f} {min(speeds):>8.1f}-{max(speeds):<8.1f} {median / reference:>15.2f}x "
              f"{versus_heretic:>10} {kl_text:>20}")
    if arguments.output:
        arguments.output.write_text(json.dumps({"machine": machine(), "device": arguments.device,
                                                "model": str(model), "trials": arguments.trials,
                                                "results": results}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
