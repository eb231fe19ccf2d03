"""The method benchmark: best KL divergence at 0 refusals on held-out toys, ours against Heretic 1.4.0.

For each toy (bench/toy_models.py), each trial budget and each seed it runs our real pipeline (the headless
``heretic-tui abliterate`` command, once per configuration: a configuration is a list of ``--set key=value``
overrides, so any method setting can be tried without changing this file) and Heretic 1.4.0 (bench/heretic_peer.py)
on the same model folder, the same prompt files, the same refusal markers, system prompt and response length, the
same budget and seed. From every run's trials it takes the best (lowest) KL divergence among trials with 0 refusals
and among trials with at most 1% refusals, and prints per toy the median over seeds and the ratio ours / Heretic.
The issue's target: with the defaults, at 30 trials, the median best KL at 0 refusals is at most 0.5x Heretic's on
every toy and never worse.

A run that never reaches 0 refusals has no best KL; its median counts it as infinitely bad, so a median over three
seeds exists only when at least two of them reach 0 refusals, and the table says how close the others came (their
fewest refusals).

Every run's result is a JSON file in ``user_cache_dir('heretic-tui')/bench-results/method-quality/``, keyed by the
toy's recipe hash, the tool, the configuration's name and overrides, the budget and the seed (``--rerun`` measures
again, e.g. after the defaults changed): an interrupted benchmark resumes where it stopped, and ``--table`` prints what exists
without running anything. Results record the machine, library versions, the git commit and wall time; wall times
on a shared machine are not comparable between runs.

    python bench/method_quality.py --quick                      # smoke run: one toy, 30 trials, one seed
    python bench/method_quality.py --budgets 30 --seeds 1,2,3   # defaults and Heretic on every toy
    python bench/method_quality.py --configuration \
        "mpoa=abliteration.ablation_method=norm_preserving,abliteration.orthogonalize_direction=true" \
        --no-heretic --no-defaults
    python bench/method_quality.py --table                      # print the tables from cached results
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import platformdirs  # noqa: E402

import heretic_peer  # noqa: E402
from toy_models import TOYS, TOYS_BY_NAME, PreparedToy, is_built, prepare_toy  # noqa: E402

RESULT_FORMAT_VERSION = 1
DEFAULT_BUDGETS = (30, 100)
DEFAULT_SEEDS = (1, 2, 3)
TARGET_RATIO = 0.5
"""The issue's target: ours / Heretic's median best KL at 0 refusals, with the defaults at 30 trials."""

HERETIC = "heretic-1.4.0"
DEFAULTS = "defaults"
THREAD_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Both tools get one thread: the machine is shared, and equal conditions matter more than speed here."""

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Configuration:
    """A named list of ``--set`` overrides of our pipeline (empty for the defaults), or Heretic itself."""

    name: str
    overrides: tuple[tuple[str, str], ...] = ()

    @property
    def is_heretic(self) -> bool:
        return self.name == HERETIC

    @classmethod
    def parse(cls, text: str) -> Configuration:
        """``name=key=value,key=value``; a bare ``name`` has no overrides."""
        name, _, rest = text.partition("=")
        overrides = []
        for assignment in filter(None, (part.strip() for part in rest.split(","))):
            key, equals, value = assignment.partition("=")
            if not equals:
                raise SystemExit(f"configuration {name!r}: {assignment!r} is not key=value")
            overrides.append((key.strip(), value.strip()))
        if not name or name == HERETIC:
            raise SystemExit(f"configuration {text!r} needs a name other than {HERETIC!r}")
        return cls(name.strip(), tuple(overrides))


def results_folder() -> Path:
    return Path(platformdirs.user_cache_dir("heretic-tui")) / "bench-results" / "method-quality"


def resolved_method_settings(configuration: Configuration) -> dict[str, Any]:
    """The settings a configuration runs with (abliteration, optimization less budget and seed, prompt counts)."""
    from heretic_tui.core.settings import load_settings, overrides_from_text

    settings = load_settings(None, environ={}, search_default_paths=False,
                             overrides=overrides_from_text(dict(configuration.overrides)))
    optimization = dataclasses.asdict(settings.optimization)
    optimization.pop("trials")
    optimization.pop("seed")
    return {"abliteration": dataclasses.asdict(settings.abliteration), "optimization": optimization,
            "prompts": {"system_prompt": settings.prompts.system_prompt,
                        "max_direction_prompts": settings.prompts.max_direction_prompts,
                        "max_eval_prompts": settings.prompts.max_eval_prompts}}


def configuration_key(configuration: Configuration) -> str:
    """The configuration's name and a hash of its overrides (not of every resolved setting: settings are added all
    the time, and a new setting that is off changes nothing). Each result records the resolved settings and the
    commit; ``--rerun`` measures again after the defaults themselves changed."""
    if configuration.is_heretic:
        return HERETIC
    material = json.dumps(sorted(configuration.overrides))
    return f"{configuration.name}-{hashlib.sha256(material.encode()).hexdigest()[:10]}"


def result_path(toy: PreparedToy, configuration: Configuration, budget: int, seed: int) -> Path:
    return (results_folder() / f"{toy.toy.name}-{toy.key}" / configuration_key(configuration)
            / f"trials{budget}-seed{seed}.json")


def clean_environment() -> dict[str, str]:
    """The environment for both tools: no HERETIC_* settings (both tools read that prefix), offline, one thread."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HERETIC_")}
    environment.update(THREAD_ENVIRONMENT, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return environment


def prompt_files(toy: PreparedToy) -> dict[str, Path]:
    return {name: toy.prompt_file(name) for name in
            ("good_prompts", "bad_prompts", "good_eval_prompts", "bad_eval_prompts")}


def run_ours(toy: PreparedToy, configuration: Configuration, budget: int, seed: int, log_path: Path
             ) -> dict[str, Any]:
    """One headless run of our CLI on the toy; its trials come from the run's report.json."""
    with tempfile.TemporaryDirectory(prefix="method-quality-") as folder:
        work = Path(folder)
        run_dir = work / "run"
        files = prompt_files(toy)
        command = [sys.executable, "-m", "heretic_tui.cli", "abliterate", "--headless", "--model", str(toy.model),
                   "--good-prompts", str(files["good_prompts"]), "--bad-prompts", str(files["bad_prompts"]),
                   "--good-eval-prompts", str(files["good_eval_prompts"]),
                   "--bad-eval-prompts", str(files["bad_eval_prompts"]),
                   "--trials", str(budget), "--seed", str(seed), "--run-dir", str(run_dir),
                   "--set", "model.device_map=cpu"]
        for key, value in configuration.overrides:
            command += ["--set", f"{key}={value}"]
        # An empty working directory and config folder: no config.toml but the defaults and the overrides.
        environment = {**clean_environment(), "XDG_CONFIG_HOME": str(work / "config")}
        started = time.perf_counter()
        with log_path.open("w", encoding="utf-8") as output:
            completed = subprocess.run(command, cwd=work, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, env=environment, check=False)
        seconds = time.perf_counter() - started
        report_path = run_dir / "report.json"
        if completed.returncode != 0 or not report_path.is_file():
            raise RuntimeError(f"our run failed (exit {completed.returncode}); see {log_path}")
        report = json.loads(report_path.read_text(encoding="utf-8"))
    trials = [{"number": item["number"], "kl": item["kl"], "refusals": item["refusals"]} for item in report["trials"]]
    return {"trials": trials, "seconds": round(seconds, 1), "baseline_refusals": report["baseline"]["refusals"],
            "methods": report.get("methods"), "timings": report.get("timings")}


def run_one(toy: PreparedToy, configuration: Configuration, budget: int, seed: int, rerun: bool = False
            ) -> dict[str, Any]:
    """Run (or find the cached result of) one tool/configuration on one toy at one budget and seed."""
    path = result_path(toy, configuration, budget, seed)
    if path.is_file() and not rerun:
        return json.loads(path.read_text(encoding="utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    log_path = path.with_suffix(".log")
    print(f"[{time.strftime('%H:%M:%S')}] {toy.toy.name} {configuration.name} {budget} trials seed {seed} ...",
          flush=True)
    if configuration.is_heretic:
        from heretic_tui.core.settings import Settings

        defaults = Settings()
        outcome = heretic_peer.run_heretic(
            toy.model, prompt_files(toy), budget, seed, defaults.abliteration.refusal_markers,
            defaults.prompts.system_prompt, defaults.abliteration.refusal_max_tokens, log_path,
            environment=clean_environment())
        outcome["versions"] = heretic_peer.versions(heretic_peer.heretic_venv())
    else:
        outcome = run_ours(toy, configuration, budget, seed, log_path)
        outcome["settings"] = resolved_method_settings(configuration)
        outcome["overrides"] = [f"{key}={value}" for key, value in configuration.overrides]
        outcome["versions"] = our_versions()
    outcome.update(format=RESULT_FORMAT_VERSION, toy=toy.toy.name, toy_key=toy.key, configuration=configuration.name,
                   budget=budget, seed=seed, machine=machine(), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    from heretic_tui.core.atomic_files import write_json_atomically

    write_json_atomically(path, outcome)
    summary = summarize_run(outcome)
    print(f"    best KL at 0 refusals {format_kl(summary['zero'])}, at <=1% {format_kl(summary['one_percent'])}, "
          f"fewest refusals {summary['fewest_refusals']} ({outcome['seconds']:.0f}s)", flush=True)
    return outcome


def our_versions() -> dict[str, str]:
    import importlib.metadata as metadata

    commit = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPOSITORY), "status", "--porcelain", "--", "core"],
                           capture_output=True, text=True, check=False).stdout.strip()
    found = {name: metadata.version(name) for name in ("torch", "transformers", "optuna")}
    found["heretic-tui"] = commit + ("+uncommitted core changes" if dirty else "")
    return found


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()} {platform.processor() or platform.system()}, {cores} cores, python " \
           f"{platform.python_version()}"


def best_kl(trials: Sequence[dict[str, Any]], most_refusals: int) -> float | None:
    candidates = [trial["kl"] for trial in trials if trial["refusals"] <= most_refusals]
    return min(candidates) if candidates else None


def summarize_run(result: dict[str, Any], evaluation_prompts: int = 100) -> dict[str, Any]:
    trials = result["trials"]
    return {"zero": best_kl(trials, 0), "one_percent": best_kl(trials, math.floor(0.01 * evaluation_prompts)),
            "fewest_refusals": min(trial["refusals"] for trial in trials)}


def median_of(values: Sequence[float | None]) -> float | None:
    """The median with a missing value (never reached) counted as infinitely bad; None when that is the median."""
    if not values:
        return None
    median = statistics.median([math.inf if value is None else value for value in values])
    return None if math.isinf(median) else median


def format_kl(value: float | None) -> str:
    return "never" if value is None else f"{value:.4f}"


def format_ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None:
        return "never" if theirs is not None else "-"
    if theirs is None:
        return "Heretic never"
    if theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


def table(toys: Sequence[PreparedToy], configurations: Sequence[Configuration], budgets: Sequence[int],
          seeds: Sequence[int]) -> str:
    """A markdown table per budget from the cached results: per toy and configuration, the per-seed and median
    best KL at 0 and at <=1% refusals and the ratio to Heretic's median (the target applies to the 0 column)."""
    lines: list[str] = []
    heretic = Configuration(HERETIC)
    for budget in budgets:
        lines += [f"### {budget} trials, seeds {', '.join(map(str, seeds))}", "",
                  "| toy | configuration | best KL @0 per seed | median @0 | ratio @0 | median @<=1% | ratio @<=1% "
                  "| fewest refusals per seed | median wall s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for toy in toys:
            label = toy.toy.name if toy.valid else f"{toy.toy.name} (failed validity check)"
            medians: dict[str, tuple[float | None, float | None]] = {}
            for configuration in [heretic, *configurations]:
                found = [result_path(toy, configuration, budget, seed) for seed in seeds]
                results = [json.loads(path.read_text(encoding="utf-8")) for path in found if path.is_file()]
                if not results:
                    continue
                summaries = [summarize_run(result) for result in results]
                zero = median_of([summary["zero"] for summary in summaries])
                one = median_of([summary["one_percent"] for summary in summaries])
                medians[configuration.name] = (zero, one)
                base = medians.get(HERETIC)
                partial = "" if len(results) == len(seeds) else f" ({len(results)}/{len(seeds)} seeds)"
                ratio_zero = format_ratio(zero, base[0]) if base and not configuration.is_heretic else ""
                ratio_one = format_ratio(one, base[1]) if base and not configuration.is_heretic else ""
                prefixes = {result.get("response_prefix") for result in results if "response_prefix" in result}
                note = f" (KL after prefix {prefixes})" if prefixes - {""} else ""
                lines.append(
                    f"| {label} | {configuration.name}{partial}{note} | "
                    + " ".join(format_kl(summary["zero"]) for summary in summaries)
                    + f" | {format_kl(zero)} | {ratio_zero} | {format_kl(one)} | {ratio_one} | "
                    + " ".join(str(summary["fewest_refusals"]) for summary in summaries)
                    + f" | {statistics.median(result['seconds'] for result in results):.0f} |")
        lines.append("")
    return "\n".join(lines)


def verdict(toys: Sequence[PreparedToy], seeds: Sequence[int], budget: int = 30) -> list[str]:
    """Whether the defaults meet the issue's target on each toy at ``budget`` trials."""
    lines = []
    for toy in toys:
        medians = []
        for configuration in (Configuration(DEFAULTS), Configuration(HERETIC)):
            paths = [result_path(toy, configuration, budget, seed) for seed in seeds]
            if not all(path.is_file() for path in paths):
                medians.append("missing")
                continue
            medians.append(median_of([summarize_run(json.loads(path.read_text(encoding="utf-8")))["zero"]
                                      for path in paths]))
        ours, theirs = medians
        if "missing" in medians:
            lines.append(f"- {toy.toy.name}: not all seeds measured yet")
        elif ours is None and theirs is None:
            lines.append(f"- {toy.toy.name}: undecided - neither tool reaches 0 refusals in most seeds (see the "
                         "<=1% column and the fewest refusals)")
        elif ours is None:
            lines.append(f"- {toy.toy.name}: MISSED - the defaults do not reach 0 refusals in most seeds "
                         f"(Heretic: {format_kl(theirs)})")
        elif theirs is None:
            lines.append(f"- {toy.toy.name}: met - Heretic does not reach 0 refusals in most seeds, ours "
                         f"{format_kl(ours)}")
        else:
            ratio = ours / theirs if theirs > 0 else math.inf
            state = "met" if ratio <= TARGET_RATIO else ("MISSED (not worse)" if ratio <= 1 else "MISSED (worse)")
            lines.append(f"- {toy.toy.name}: {state} - ours {ours:.4f} / Heretic {theirs:.4f} = {ratio:.2f} "
                         f"(target <= {TARGET_RATIO})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toys", default=",".join(TOYS_BY_NAME), help="comma-separated toy names")
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)), help="trial budgets, e.g. 30,100")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="seeds, e.g. 1,2,3")
    parser.add_argument("--configuration", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                        help="a configuration of our pipeline: a name and --set overrides (repeatable)")
    parser.add_argument("--no-defaults", action="store_true", help="do not run our defaults")
    parser.add_argument("--no-heretic", action="store_true", help="do not run Heretic (cached results still show)")
    parser.add_argument("--quick", action="store_true", help="smoke run: the first toy, 30 trials, one seed")
    parser.add_argument("--include-invalid", action="store_true",
                        help="also run toys that failed their validity check (the table marks them)")
    parser.add_argument("--rerun", action="store_true", help="measure again even where a cached result exists")
    parser.add_argument("--table", action="store_true", help="print the tables from cached results; run nothing")
    parser.add_argument("--check-measurement", action="store_true",
                        help="compare both tools' base first-token distributions on each toy, then stop")
    arguments = parser.parse_args()

    names = arguments.toys.split(",")
    budgets = [int(value) for value in arguments.budgets.split(",")]
    seeds = [int(value) for value in arguments.seeds.split(",")]
    if arguments.quick:
        names, budgets, seeds = [TOYS[0].name], [30], [seeds[0]]
    unknown = [name for name in names if name not in TOYS_BY_NAME]
    if unknown:
        parser.error(f"unknown toys {unknown}; known: {', '.join(TOYS_BY_NAME)}")
    configurations = ([] if arguments.no_defaults else [Configuration(DEFAULTS)]) + [
        Configuration.parse(text) for text in arguments.configuration]

    prepared: dict[str, PreparedToy] = {}

    def toy_named(name: str) -> PreparedToy:
        """The toy, built on first use (so runs on built toys start while others still build)."""
        if name not in prepared:
            prepared[name] = prepare_toy(TOYS_BY_NAME[name])
            if not prepared[name].valid:
                print(f"warning: toy {name} failed its validity check ({prepared[name].manifest['check']}); "
                      + ("its numbers are marked as such" if arguments.include_invalid else "it is skipped"),
                      flush=True)
        return prepared[name]

    if arguments.table:
        names = [name for name in names if is_built(TOYS_BY_NAME[name])]
    if arguments.check_measurement:
        for name in names:
            toy = toy_named(name)
            print(name, heretic_peer.compare_first_token_distributions(toy.model, prompt_files(toy)), flush=True)
        return
    if not arguments.table:
        started = time.perf_counter()
        # The target's pair first (Heretic and our defaults, side by side per toy and seed, every budget), then
        # the other configurations.
        primary = ([] if arguments.no_heretic else [Configuration(HERETIC)]) + [
            configuration for configuration in configurations if configuration.name == DEFAULTS]
        others = [configuration for configuration in configurations if configuration.name != DEFAULTS]
        for group in (primary, others):
            for budget in budgets:
                for seed in seeds:  # seed-major: every toy has a first result early
                    for name in names:
                        if not toy_named(name).valid and not arguments.include_invalid:
                            continue
                        for configuration in group:
                            try:
                                run_one(toy_named(name), configuration, budget, seed, arguments.rerun)
                            except RuntimeError as error:
                                print(f"    FAILED: {error}", flush=True)
        print(f"benchmark wall time {time.perf_counter() - started:.0f}s on {machine()} (shared; not comparable)")
    toys = [toy_named(name) for name in names]
    print(table(toys, configurations, budgets, seeds))
    if 30 in budgets and not arguments.no_defaults:
        print("Target (defaults, 30 trials, median best KL at 0 refusals <= 0.5x Heretic's, never worse):")
        print("\n".join(verdict(toys, seeds)))


if __name__ == "__main__":
    main()
