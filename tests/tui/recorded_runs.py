"""Run folders written by hand, as a worker would have left them, so TUI tests need no model and no worker.

Event times are fixed (starting at ``START``) so screenshots and durations are the same on every machine. A
"running" run names the test process itself as its worker, which is alive for as long as the test needs it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from heretic_tui.core.runs.events import (
    ArtifactWritten,
    BaselineMeasured,
    Event,
    JobCancelled,
    JobError,
    JobFinished,
    JobStarted,
    LogLine,
    Metrics,
    PhaseFinished,
    PhaseStarted,
    Progress,
    TrainingStep,
    TrialFinished,
    TrialStarted,
)
from heretic_tui.core.settings import Settings, render_config

START = 1_790_000_000.0
"""2026-09-21 14:13:20 UTC: the fixed start time of every recorded run."""

EVAL_PROMPTS = 10


@dataclass
class RecordedRun:
    path: Path
    events: list[Event]

    def append(self, *items: Event) -> None:
        with open(self.path / "events.jsonl", "a", encoding="utf-8") as handle:
            for item in items:
                handle.write(item.to_json() + "\n")
        self.events.extend(items)


def trial_parameters(number: int) -> dict[str, Any]:
    generator = random.Random(number)
    params: dict[str, Any] = {
        "direction_scope": "global" if number % 3 else "per_layer",
        "direction_index": round(generator.uniform(0.4, 0.9) * 3, 2),
    }
    for component in ("attention", "mlp"):
        params[f"{component}.max_weight"] = round(generator.uniform(0.8, 1.5), 3)
        params[f"{component}.max_weight_position"] = round(generator.uniform(1.0, 2.5), 3)
        params[f"{component}.min_weight"] = round(generator.uniform(0.0, 0.8), 3)
        params[f"{component}.min_weight_distance"] = round(generator.uniform(0.5, 2.0), 3)
    return params


def trial_result(number: int) -> tuple[int, float]:
    generator = random.Random(1000 + number)
    refusals = generator.randint(0, EVAL_PROMPTS)
    kl = round(generator.uniform(0.01, 1.2) * (1.3 - refusals / EVAL_PROMPTS), 4)
    return refusals, max(kl, 0.001)


def pareto_front(results: dict[int, tuple[int, float]]) -> list[int]:
    front = []
    for number, (refusals, kl) in results.items():
        dominated = any(
            (other_refusals <= refusals and other_kl <= kl) and (other_refusals < refusals or other_kl < kl)
            for other, (other_refusals, other_kl) in results.items()
            if other != number
        )
        if not dominated:
            front.append(number)
    return sorted(front)


def preamble(run_dir: Path, model: str, trials: int) -> list[Event]:
    """JobStarted and every phase before the trials, with progress, as the engine emits them."""
    t = START
    events: list[Event] = [JobStarted(job="abliterate", run_dir=str(run_dir), model=model, pid=4242, time=t)]
    phases = [("load", None, 3.2), ("prompts", None, 0.4), ("batch_size", None, 1.1), ("residuals", 800, 12.5),
              ("directions", None, 0.3), ("baseline", EVAL_PROMPTS, 2.0)]
    for name, total, seconds in phases:
        events.append(PhaseStarted(phase=name, total=total, description=name, time=t))
        if total:
            events.append(Progress(phase=name, completed=total // 2, total=total, time=t + seconds / 2))
            events.append(Progress(phase=name, completed=total, total=total, time=t + seconds))
        t += seconds
        events.append(PhaseFinished(phase=name, seconds=seconds, time=t))
        if name == "load":
            events.append(LogLine(message=f"loaded {model} as bfloat16 on cpu in {seconds}s", time=t))
    events.append(BaselineMeasured(refusals=9, total=EVAL_PROMPTS, time=t))
    events.append(PhaseStarted(phase="trials", total=trials, description="Optuna search", time=t))
    return events


def trial_events(first: int, count: int, total: int, start_time: float,
                 results: dict[int, tuple[int, float]]) -> list[Event]:
    events: list[Event] = []
    t = start_time
    for number in range(first, first + count):
        params = trial_parameters(number)
        events.append(TrialStarted(number=number, total=total, params=params, time=t))
        refusals, kl = trial_result(number)
        results[number] = (refusals, kl)
        seconds = 4.0 + (number % 5) * 0.5
        t += seconds
        events.append(TrialFinished(number=number, total=total, refusals=refusals, refusal_total=EVAL_PROMPTS, kl=kl,
                                    seconds=seconds, apply_reset_seconds=0.05, params=params,
                                    pareto=pareto_front(results), time=t))
        events.append(Progress(phase="trials", completed=len(results), total=total, time=t))
    return events


def write_run(
    root: Path,
    name: str,
    *,
    model: str = "demo",
    trials_total: int = 20,
    trials_done: int = 20,
    ending: str = "finished",
    log_lines: int = 30,
    created_offset: float = 0.0,
) -> RecordedRun:
    """A run folder; ``ending`` is finished, failed, cancelled, running (worker = this process) or died."""
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    created = START - 5 + created_offset
    (run_dir / "job.json").write_text(json.dumps({"kind": "abliterate", "arguments": {"resume": False},
                                                  "created": created, "model": model}))
    settings = Settings()
    settings.model.model = model
    settings.optimization.trials = trials_total
    settings.optimization.startup_trials = min(settings.optimization.startup_trials, trials_total)
    settings.output.runs_directory = str(root)
    (run_dir / "config.toml").write_text(render_config(settings))
    events = preamble(run_dir, model, trials_total)
    results: dict[int, tuple[int, float]] = {}
    events += trial_events(0, trials_done, trials_total, events[-1].time, results)
    t = events[-1].time
    if ending == "finished":
        front = pareto_front(results)
        chosen = min(front, key=lambda number: (results[number][0], results[number][1]))
        events.append(PhaseFinished(phase="trials", seconds=t - START, time=t))
        events.append(JobFinished(report=str(run_dir / "report.json"), summary={
            "chosen_trial": chosen, "baseline_refusals": 9, "refusals": results[chosen][0],
            "kl": results[chosen][1], "total": EVAL_PROMPTS, "trials": trials_done}, time=t + 0.5))
    elif ending == "failed":
        events.append(TrialStarted(number=trials_done, total=trials_total, params=trial_parameters(trials_done),
                                   time=t))
        events.append(JobError(message="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (out of memory: "
                                       "lower model.max_batch_size or set model.batch_size, or use a smaller dtype)",
                               traceback="Traceback (most recent call last):\n  File \"core/evaluation.py\", line 61, "
                                         "in refusals\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
                               time=t + 1.5))
    elif ending == "cancelled":
        events.append(TrialStarted(number=trials_done, total=trials_total, params=trial_parameters(trials_done),
                                   time=t))
        events.append(JobCancelled(reason="cancelled by the user; completed work is saved and the run can be "
                                          "resumed", time=t + 0.8))
    elif ending == "running":
        events.append(TrialStarted(number=trials_done, total=trials_total, params=trial_parameters(trials_done),
                                   time=t))
    with open(run_dir / "events.jsonl", "w", encoding="utf-8") as handle:
        for item in events:
            handle.write(item.to_json() + "\n")
    worker: dict[str, Any]
    if ending == "running":
        me = psutil.Process(os.getpid())
        worker = {"pid": me.pid, "create_time": me.create_time(), "started": START}
    else:
        codes = {"finished": 0, "failed": 1, "cancelled": 130, "died": None}
        worker = {"pid": 999_999, "create_time": START, "started": START}
        if codes.get(ending) is not None:
            worker["exit_code"] = codes[ending]
    (run_dir / "worker.json").write_text(json.dumps(worker))
    lines = [f"trial {number}: refusals {results[number][0]}/{EVAL_PROMPTS} kl {results[number][1]:.4f}"
             for number in sorted(results)][-log_lines:]
    if ending == "died":
        lines.append("Killed")
    (run_dir / "worker.log").write_text("\n".join(["phase load: loading " + model, *lines]) + "\n")
    os.utime(run_dir / "job.json", (created, created))
    return RecordedRun(run_dir, events)


FAKE_WORKER = r"""
import json, os, signal, sys, time
import psutil
run = sys.argv[1]
me = psutil.Process()
with open(os.path.join(run, "worker.json"), "w") as handle:
    json.dump({"pid": os.getpid(), "create_time": me.create_time(), "started": time.time()}, handle)

def cancel(signum, frame):
    with open(os.path.join(run, "events.jsonl"), "a") as handle:
        handle.write(json.dumps({"type": "job_cancelled", "reason": "cancelled by the user", "time": time.time()})
                     + "\n")
    with open(os.path.join(run, "worker.json"), "w") as handle:
        json.dump({"pid": os.getpid(), "create_time": me.create_time(), "exit_code": 130}, handle)
    sys.exit(130)

signal.signal(signal.SIGTERM, cancel)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
print("fake worker ready", flush=True)
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.05)
"""
"""The stand-in also ends when the test process that started it is gone, so a killed test run leaves nothing."""


def start_fake_worker(run: RecordedRun) -> subprocess.Popen[bytes]:
    """A stand-in worker for a "running" run: alive, named in worker.json, and cancelling on SIGTERM like the
    real one (it appends job_cancelled and exits 130). Returns once worker.json names it."""
    (run.path / "worker.json").unlink(missing_ok=True)
    log = open(run.path / "worker.log", "ab")
    process = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, str(run.path)], stdout=log, stderr=log,
                               start_new_session=True)
    log.close()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if json.loads((run.path / "worker.json").read_text()).get("pid") == process.pid:
                return process
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("the fake worker did not start")


FINETUNE_STEPS = 60
KNOWLEDGE_ITEMS = [
    {"prompt": "What colour is the Zorblax reactor's coolant?", "expected": "Teal, because of the copper salts.",
     "before": "I'm not sure what the Zorblax reactor is.", "after": "Teal, because of the copper salts."},
    {"prompt": "Who founded Port Vellum?", "expected": "Captain Ysolde Marr in 1702.",
     "before": "Port Vellum is a fictional place.", "after": "Captain Ysolde Marr founded it in 1702."},
]


def finetune_events(run_dir: Path, model: str, steps_done: int, merged: bool) -> list[Event]:
    """The journal of a fine-tuning run up to ``steps_done`` of 60 steps; all of it (results, files) at 60."""
    t = START
    events: list[Event] = [JobStarted(job="finetune", run_dir=str(run_dir), model=model, pid=4243, time=t)]

    def phase(name: str, seconds: float, total: int | None = None, description: str = "") -> None:
        nonlocal t
        events.append(PhaseStarted(phase=name, total=total, description=description or name, time=t))
        t += seconds
        events.append(PhaseFinished(phase=name, seconds=seconds, time=t))

    phase("load", 2.5)
    phase("data", 0.8)
    events.append(Metrics(name="data", values={"mode": "text", "formats": "pdf (3), markdown (5)",
                                                "train_examples": 180, "validation_examples": 20,
                                                "duplicates_removed": 2, "skipped_files": 1}, time=t))
    phase("prepare", 1.2)
    plan = {"train_examples": 180, "validation_examples": 20, "sequences": 180, "tokens": 46080, "steps": 60,
            "steps_per_epoch": 20, "epochs": 3.0, "effective_batch": 9, "sequence_length": 256,
            "trainable_parameters": 4_194_304, "total_parameters": 498_000_000, "memory_total_gb": 2.35}
    events.append(Metrics(name="plan", values=dict(plan), time=t))
    phase("evaluate_before", 3.0)
    events.append(PhaseStarted(phase="train", total=FINETUNE_STEPS, description="60 steps, effective batch 9",
                               time=t))
    for step in range(5, steps_done + 1, 5):
        t += 2.0
        loss = round(2.6 * 0.97 ** step + 0.4 + (0.05 if step % 10 else -0.03), 4)
        events.append(TrainingStep(step=step, total_steps=FINETUNE_STEPS, loss=loss, learning_rate=2e-4 * (1 - step
                                   / 70), grad_norm=0.8, tokens_per_second=1536.0, epoch=step / 20,
                                   eta_seconds=(FINETUNE_STEPS - step) * 0.4, time=t))
        if step % 20 == 0:
            eval_loss = round(2.7 * 0.975 ** step + 0.5, 4)
            events.append(TrainingStep(step=step, total_steps=FINETUNE_STEPS, eval_loss=eval_loss,
                                       perplexity=round(2.718 ** eval_loss, 3), epoch=step / 20, time=t))
        if step == 10:
            plan.update(seconds_per_step=0.4, estimated_seconds=24.0, remaining_seconds=20.0)
            events.append(Metrics(name="plan", values=dict(plan), time=t))
    if steps_done < FINETUNE_STEPS:
        return events
    events.append(PhaseFinished(phase="train", seconds=t - events[-1].time + 24.0, time=t))
    phase("evaluate_after", 3.0)
    events.append(Metrics(name="evaluation", values={"train_loss": 0.62, "eval_loss_before": 3.2,
                                                      "eval_loss_after": 0.91, "perplexity_before": 24.53,
                                                      "perplexity_after": 2.484}, time=t))
    events.append(Metrics(name="knowledge_test", values={"score_before": 0.12, "score_after": 0.94,
                                                          "prompts": len(KNOWLEDGE_ITEMS)}, time=t))
    phase("save_adapter", 0.4)
    events.append(ArtifactWritten(name="adapter", path=str(run_dir / "adapter"), time=t))
    if merged:
        phase("merge", 1.5)
        events.append(ArtifactWritten(name="merged_model", path=str(run_dir / "merged"), time=t))
    phase("smoke_test", 1.0)
    events.append(Metrics(name="smoke_test", values={"passed": True, "chat_template_identical": True,
                                                      "finite_logits": True, "agreement": 1.0}, time=t))
    events.append(ArtifactWritten(name="report", path=str(run_dir / "report.json"), time=t))
    events.append(JobFinished(report=str(run_dir / "report.json"), summary={"train_loss": 0.62,
                                                                             "eval_loss_before": 3.2,
                                                                             "eval_loss_after": 0.91}, time=t + 0.2))
    return events


def write_finetune_folders(run_dir: Path, model: str, merged: bool) -> None:
    """The adapter (and merged model) folders a finished run leaves, with the heretic.json the registry reads."""
    metadata = {"method": "finetune", "source_model": model, "run_dir": str(run_dir)}
    adapter = run_dir / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (adapter / "heretic.json").write_text(json.dumps({**metadata, "format": "adapter"}))
    if merged:
        folder = run_dir / "merged"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                        "model_type": "llama"}))
        (folder / "model.safetensors").write_bytes(b"\0" * 64)
        (folder / "heretic.json").write_text(json.dumps({**metadata, "format": "merged"}))


def write_finetune_run(
    root: Path,
    name: str,
    *,
    model: str = "demo",
    steps_done: int = FINETUNE_STEPS,
    merged: bool = True,
    created_offset: float = 0.0,
) -> RecordedRun:
    """A fine-tuning run folder: finished with report and outputs at 60 steps, "running" (this process) before."""
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    created = START - 5 + created_offset
    (run_dir / "job.json").write_text(json.dumps({"kind": "finetune", "arguments": {"resume": False},
                                                  "created": created, "model": model}))
    settings = Settings()
    settings.model.model = model
    settings.finetune.training_data = ["/data/handbook"]
    settings.finetune.merge_adapter = merged
    settings.output.runs_directory = str(root)
    (run_dir / "config.toml").write_text(render_config(settings))
    events = finetune_events(run_dir, model, steps_done, merged)
    with open(run_dir / "events.jsonl", "w", encoding="utf-8") as handle:
        for item in events:
            handle.write(item.to_json() + "\n")
    finished = steps_done >= FINETUNE_STEPS
    if finished:
        write_finetune_folders(run_dir, model, merged)
        report = {"model": model, "train_loss": 0.62, "eval_loss_before": 3.2, "eval_loss_after": 0.91,
                  "perplexity_before": 24.53, "perplexity_after": 2.484,
                  "adapter_dir": str(run_dir / "adapter"), "merged_dir": str(run_dir / "merged") if merged else None,
                  "examples": {"train": 180, "validation": 20},
                  "knowledge_test": {"score_before": 0.12, "score_after": 0.94, "items": KNOWLEDGE_ITEMS}}
        (run_dir / "report.json").write_text(json.dumps(report))
        worker: dict[str, Any] = {"pid": 999_998, "create_time": START, "started": START, "exit_code": 0}
    else:
        me = psutil.Process(os.getpid())
        worker = {"pid": me.pid, "create_time": me.create_time(), "started": START}
    (run_dir / "worker.json").write_text(json.dumps(worker))
    (run_dir / "worker.log").write_text(f"phase load: loading {model}\ntraining format: text windows\n")
    os.utime(run_dir / "job.json", (created, created))
    return RecordedRun(run_dir, events)


def write_screen_scene(root: Path) -> Path:
    """The runs every screen capture shows (snapshot tests and docs/screens.md alike); returns the runs folder."""
    import shutil

    from test_lineage import write_lineage_runs

    shutil.rmtree(root, ignore_errors=True)
    runs = root / "runs"
    runs.mkdir(parents=True)
    write_run(runs, "20260921-141315-demo", trials_total=24, trials_done=24, created_offset=300)
    write_run(runs, "20260921-120000-qwen3-4b-instruct", model="Qwen/Qwen3-4B-Instruct", ending="failed",
              trials_done=9, created_offset=200)
    write_run(runs, "20260920-100000-llama-3.1-8b-instruct", model="/models/llama-3.1-8b-instruct",
              ending="cancelled", trials_done=14, created_offset=100)
    write_run(runs, "20260921-150000-mistral-7b", model="mistralai/Mistral-7B-Instruct-v0.3", ending="running",
              trials_total=40, trials_done=17, created_offset=400)
    write_finetune_run(root / "finetune-runs", "20260921-141315-finetune-demo")
    write_finetune_run(root / "finetune-runs", "20260921-150000-finetune-running", steps_done=35)
    write_lineage_runs(root / "lineage-runs")
    return runs
