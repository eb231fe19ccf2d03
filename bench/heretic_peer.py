"""Heretic 1.4.0 as the method benchmark's peer: installed into its own venv and run headless on a toy.

Heretic is AGPL-3.0: this module only installs the released package and runs its command (or, for the measurement
check, calls its public classes from its own venv); none of its code or text is copied here.

How a run works. Heretic reads its settings from ``config.toml`` in its working directory, so each run gets a fresh
temporary working directory holding that file (the toy's model folder, the four prompt files of the toy, the trial
budget, the seed, our refusal markers, our system prompt, our response length, CPU placement, a fixed batch size)
and its study checkpoint folder. Heretic runs with stdin closed; once its Optuna journal says the study is
``finished`` (a study user attribute Heretic sets after the last trial) the trial menu it would ask next is not
needed and the process is stopped. The trials are then read from the journal (each trial's ``kl_divergence`` and
``refusals`` user attributes), without Optuna, so the journal format of Heretic's Optuna version does not matter.

What was verified about how both tools measure (Heretic 1.4.0 source read, behaviour checked on the toys):

- KL divergence: both compute ``kl_div(candidate_log_probs, base_log_probs, reduction="batchmean",
  log_target=True)``, i.e. KL(base || abliterated) of the first answer token's distribution, averaged over the
  harmless evaluation prompts, each rendered with the tokenizer's chat template after the same system prompt and
  an opened assistant turn, left padded. :func:`compare_first_token_distributions` runs Heretic's own ``Model``
  class in its venv and our pipeline's ``first_token_log_probabilities`` on the same toy and prompts and reports the
  largest difference of the log-probabilities and the KL between the two (``method_quality.py
  --check-measurement``). On the demo model and the three benchmark toys the log-probabilities agree to within
  1e-5 and the KL between them is below 1e-8 (float noise), so the two tools read the same distribution.
- One difference: Heretic first looks for a common prefix of the model's responses (over 100 harmless and 100
  harmful direction prompts) and, where there is one, measures KL (and generates) after it. The run's log says
  which; :func:`run_heretic` records it as ``response_prefix``. With an empty prefix the two measure the same
  thing; with a non-empty one the benchmark marks the Heretic numbers as measured after that prefix.
- Refusals: both count the harmful evaluation prompts whose greedy response contains a marker (case-insensitive,
  typographic apostrophes normalised) or is empty; Heretic is given our markers (``refusal_markers``) and our
  response length (``max_response_length`` = our ``abliteration.refusal_max_tokens``). Heretic also removes ``*``
  and collapses white space before matching, which cannot matter for the toys' plain word-level answers.
- Everything else is Heretic's own default: its MPOA ("row_normalization = full" with direction
  orthogonalization), its search space and its TPE sampler with 60 random startup trials (so a 30-trial Heretic
  run is random search, as a user running ``--n-trials 30`` would get).

    python bench/heretic_peer.py install      # make sure the venv exists (reused when present)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

HERETIC_VERSION = "1.4.0"
TORCH_VERSION = "2.13.0"
"""Installed into the venv before Heretic, so pip does not pull a CUDA build of torch."""

HERETIC_BATCH_SIZE = 64
"""Heretic's automatic batch-size search costs a minute per run on the toys; the size does not change results."""

POLL_SECONDS = 2.0

SET_STUDY_USER_ATTRIBUTE, SET_TRIAL_STATE_VALUES, SET_TRIAL_USER_ATTRIBUTE = 2, 6, 8
"""Operation codes of Optuna's journal (optuna.storages.journal's JournalOperation, stable since Optuna 3)."""

TRIAL_COMPLETE = 1
"""optuna.trial.TrialState.COMPLETE."""

Log = Callable[[str], None]


def heretic_venv() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("heretic-tui-bench")) / "heretic-venv"


def installed_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.is_file():
        return None
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('heretic-llm'))"],
        capture_output=True, text=True, check=False,
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def ensure_heretic(venv: Path | None = None, log: Log = print) -> Path:
    """The venv with Heretic 1.4.0, created and installed first when missing (torch first, CPU build)."""
    venv = venv or heretic_venv()
    if installed_version(venv) == HERETIC_VERSION:
        return venv
    log(f"installing heretic-llm=={HERETIC_VERSION} into {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"torch=={TORCH_VERSION}"], check=True)
    subprocess.run([*pip, f"heretic-llm=={HERETIC_VERSION}"], check=True)
    found = installed_version(venv)
    if found != HERETIC_VERSION:
        raise RuntimeError(f"heretic-llm {HERETIC_VERSION} did not install into {venv} (found {found})")
    return venv


def versions(venv: Path) -> dict[str, str]:
    script = ("import importlib.metadata as m, json; print(json.dumps({name: m.version(name) for name in "
              "('heretic-llm', 'torch', 'transformers', 'optuna', 'peft')}))")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def heretic_config(model: Path, prompt_files: dict[str, Path], trials: int, seed: int, checkpoints: Path,
                   refusal_markers: Sequence[str], system_prompt: str, response_tokens: int) -> str:
    """Heretic's config.toml for one run on a toy."""
    import tomlkit

    document = tomlkit.document()
    document["model"] = str(model)
    document["device_map"] = "cpu"
    document["dtypes"] = ["float32"]
    document["batch_size"] = HERETIC_BATCH_SIZE
    document["n_trials"] = trials
    document["seed"] = seed
    document["study_checkpoint_dir"] = str(checkpoints)
    document["refusal_markers"] = list(refusal_markers)
    document["system_prompt"] = system_prompt
    document["max_response_length"] = response_tokens
    for ours, theirs in (("good_prompts", "good_prompts"), ("bad_prompts", "bad_prompts"),
                         ("good_eval_prompts", "good_evaluation_prompts"),
                         ("bad_eval_prompts", "bad_evaluation_prompts")):
        table = tomlkit.table()
        table["dataset"] = str(prompt_files[ours])
        document[theirs] = table
    return tomlkit.dumps(document)


def journal_state(journal: Path) -> tuple[bool, list[dict[str, Any]]]:
    """Whether the study is finished, and its completed trials (number, kl, refusals), read from the journal.

    Optuna's journal is one JSON operation per line; a trial's user attributes and its state arrive as separate
    operations, so they are gathered per trial id and a trial counts once it is complete (state 1).
    """
    finished = False
    attributes: dict[int, dict[str, Any]] = {}
    complete: set[int] = set()
    if not journal.is_file():
        return False, []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            operation = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line Heretic is writing right now
        code = operation.get("op_code")
        if code == SET_STUDY_USER_ATTRIBUTE and operation["user_attr"].get("finished") is True:
            finished = True
        elif code == SET_TRIAL_USER_ATTRIBUTE:
            attributes.setdefault(operation["trial_id"], {}).update(operation["user_attr"])
        elif code == SET_TRIAL_STATE_VALUES and operation.get("state") == TRIAL_COMPLETE:
            complete.add(operation["trial_id"])
    trials = [
        {"number": attributes[trial].get("index", trial + 1) - 1, "kl": float(attributes[trial]["kl_divergence"]),
         "refusals": int(attributes[trial]["refusals"])}
        for trial in sorted(complete) if "kl_divergence" in attributes.get(trial, {})
    ]
    return finished, trials


def run_heretic(model: Path, prompt_files: dict[str, Path], trials: int, seed: int, refusal_markers: Sequence[str],
                system_prompt: str, response_tokens: int, log_path: Path, venv: Path | None = None,
                log: Log = print, environment: Mapping[str, str] | None = None,
                keep_journal: Path | None = None) -> dict[str, Any]:
    """Run Heretic headless on one toy and return its trials, the response prefix it found and its wall time.

    ``environment`` replaces the process environment (the benchmark drops HERETIC_* variables, which Heretic reads
    as settings, and fixes the thread count). ``keep_journal`` receives a copy of Heretic's Optuna journal before
    its working directory goes (the throughput benchmark reads the trials' times from it)."""
    venv = ensure_heretic(venv, log)
    with tempfile.TemporaryDirectory(prefix="heretic-peer-") as folder:
        work = Path(folder)
        checkpoints = work / "checkpoints"
        (work / "config.toml").write_text(
            heretic_config(model, prompt_files, trials, seed, checkpoints, refusal_markers, system_prompt,
                           response_tokens), encoding="utf-8")
        environment = {**(os.environ if environment is None else environment), "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb"}
        started = time.perf_counter()
        with log_path.open("w", encoding="utf-8") as output:
            process = subprocess.Popen([str(venv / "bin" / "heretic")], cwd=work, stdin=subprocess.DEVNULL,
                                       stdout=output, stderr=subprocess.STDOUT, env=environment,
                                       start_new_session=True)
            finished, found = False, []
            try:
                while process.poll() is None:
                    journals = list(checkpoints.glob("*.jsonl"))
                    if journals:
                        finished, found = journal_state(journals[0])
                        if finished:
                            break
                    time.sleep(POLL_SECONDS)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
        seconds = time.perf_counter() - started
        journals = list(checkpoints.glob("*.jsonl"))
        if journals:
            finished, found = journal_state(journals[0])
            if keep_journal is not None:
                shutil.copyfile(journals[0], keep_journal)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if not finished or len(found) < trials:
        raise RuntimeError(f"Heretic stopped after {len(found)} of {trials} trials (exit {process.returncode}); "
                           f"see {log_path}")
    return {"trials": found, "response_prefix": response_prefix(text), "seconds": round(seconds, 1),
            "baseline_refusals": baseline_refusals(text)}


def response_prefix(log_text: str) -> str | None:
    """The common response prefix Heretic's log reports ('' when it found none; None when the log does not say)."""
    for line in log_text.splitlines():
        if "Prefix found:" in line:
            return line.split("Prefix found:", 1)[1].strip()
        if "None found" in line:
            return ""
    return None


def baseline_refusals(log_text: str) -> int | None:
    for line in log_text.splitlines():
        if "Initial refusals:" in line:
            return int(line.split("Initial refusals:", 1)[1].split("/")[0].strip())
    return None


HERETIC_SIDE_MEASUREMENT = r"""
import json, os, sys
import torch
os.chdir(sys.argv[1])
sys.argv = ["heretic"]
from heretic.config import Settings
from heretic.model import Model
from heretic.utils import load_prompts
torch.set_grad_enabled(False)
settings = Settings()
model = Model(settings)
prompts = load_prompts(settings, settings.good_evaluation_prompts)
torch.save(model.get_logprobs_batched(prompts), "heretic.pt")
"""
"""Run by the Heretic venv's Python in a folder holding config.toml: the base first-token log-probabilities of the
harmless evaluation prompts through Heretic's own Model class (no prefix: the run's log says whether one is used)."""


def heretic_first_token_log_probabilities(model: Path, prompt_files: dict[str, Path], system_prompt: str,
                                          venv: Path | None = None) -> Any:
    import torch

    venv = ensure_heretic(venv)
    with tempfile.TemporaryDirectory(prefix="heretic-measure-") as folder:
        work = Path(folder)
        (work / "config.toml").write_text(
            heretic_config(model, prompt_files, 1, 0, work / "checkpoints", [], system_prompt, 1), encoding="utf-8")
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        subprocess.run([str(venv / "bin" / "python"), "-c", HERETIC_SIDE_MEASUREMENT, str(work)], check=True,
                       env=environment, capture_output=True, stdin=subprocess.DEVNULL)
        return torch.load(work / "heretic.pt")


def compare_first_token_distributions(model: Path, prompt_files: dict[str, Path], venv: Path | None = None
                                      ) -> dict[str, float]:
    """Base first-token log-probabilities of the harmless evaluation prompts through Heretic and through our
    pipeline (the Evaluator's reference): their largest absolute difference and the KL between them."""
    from heretic_tui.core.abliteration.evaluation import kl_divergence
    from heretic_tui.core.models.batch_size import choose_batch_size
    from heretic_tui.core.models.chat_template import format_chat
    from heretic_tui.core.models.generation import first_token_log_probabilities
    from heretic_tui.core.models.loading import load_model
    from heretic_tui.core.settings import Settings

    settings = Settings()
    settings.model.model = str(model)
    settings.model.device_map = "cpu"
    loaded = load_model(settings.model)
    lines = prompt_files["good_eval_prompts"].read_text(encoding="utf-8").splitlines()
    texts = format_chat(loaded.tokenizer, settings.prompts.system_prompt, [line for line in lines if line.strip()])
    batch_size = choose_batch_size(loaded, texts, settings.model, log=lambda message: None)
    ours = first_token_log_probabilities(loaded, texts, batch_size)
    theirs = heretic_first_token_log_probabilities(model, prompt_files, settings.prompts.system_prompt, venv)
    if ours.shape != theirs.shape:
        return {"same_shape": 0.0, "max_abs_difference": float("inf"), "kl_between": float("inf")}
    return {"same_shape": 1.0, "max_abs_difference": float((ours - theirs.float()).abs().max()),
            "kl_between": kl_divergence(ours, theirs.float())}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Install Heretic 1.4.0 for the method benchmark.")
    parser.add_argument("command", choices=["install"])
    parser.parse_args()
    venv = ensure_heretic()
    print(f"{venv}: " + ", ".join(f"{name} {version}" for name, version in versions(venv).items()))


if __name__ == "__main__":
    main()
