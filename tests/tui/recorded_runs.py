"""Run folders for the TUI tests, recorded from real jobs on the demo model, and the scenes derived from them.

Screens are tested on what the core really writes, never on journals written by hand. :func:`recording` runs the
real jobs once (an abliteration study, an export of its chosen trial, a comparison, a fine-tune of the export, and
studies that were cancelled, failed and killed), through the same start functions the screens call, and keeps the
folders in the shared test cache for as long as the core's code is unchanged. Tests copy the runs they need into
their own folder with :meth:`Recording.place`, which rewrites what must change with the copy and nothing else:

- paths: every absolute path of a placed run names its new place;
- times: every timestamp moves by the same amount (the run starts at ``start``), so durations and the order of
  events stay as recorded while screens, clocks and ages are the same on every machine;
- a run "in flight": a finished run's journal cut after a trial or a step, without the files only the end writes,
  and worker.json as a live worker leaves it; the rest of the real journal is kept to be played on.

Screenshots need more than fixed times: the demo model is trained on each machine, and another CPU or another
thread count changes its last float bits, so the numbers of a fresh recording differ slightly between machines.
The screen scene (``tests/tui/scene/``) is therefore one recording placed once and committed, without the weight
files no screen reads; ``python tests/tui/recorded_runs.py scene`` writes it again, and a test fails when the core
writes runs of another shape than the committed scene (new events, fields, files), saying to do so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from shared_cache import SHARED_CACHE  # noqa: E402

from heretic_tui.core.runs.events import (  # noqa: E402
    Event,
    JobCancelled,
    JobError,
    JobWarning,
    LogLine,
    PhaseStarted,
    TrainingStep,
    TrialFinished,
    TrialStarted,
)
from heretic_tui.core.runs.journal import read_journal  # noqa: E402

START = 1_790_000_000.0
"""2026-09-21 14:13:20 UTC: where placed runs start unless a test says otherwise (the fixed clock is just after)."""

RECORDING_FORMAT = 1
"""The manifest's format. (The cache key covers the core's code and this module's, so changed jobs re-record.)"""

ABLITERATION_TRIALS = 12
INTERRUPTED_TRIALS = 40
"""The cancelled, failed and killed studies are set up for this many trials and stopped early."""
CANCEL_AFTER_TRIALS = 3
KILL_AFTER_TRIALS = 8
"""The killed study runs long enough that a cut of it makes a live dashboard worth looking at. It runs its trials
one by one (abliteration.trial_batch = 1), so tests can cut it after any trial; the other studies share passes."""
TRIAL_BATCH = 8
"""abliteration.trial_batch of the recorded studies: fixed, as the automatic choice reads the machine's memory."""
FINETUNE_MAX_STEPS = 24

MANIFEST = "recording.json"
"""Written last into a recording: where each recorded run is, so an interrupted recording is made again."""

TRAINING_TEXT = (
    "Quellton is the capital of Zorbia. The river Lumen runs through Quellton and flows north into the Silver Sea. "
    "Zorbians bake blue bread on the first day of spring, and the tower of Quellton has seven bells."
)

OUTPUT_FOLDERS = ("exports", "jobs", "adapter", "merged", "checkpoints")
"""What a job produces besides its own files: gone from a cut run (the end writes them) and from outputs=False."""
END_FILES = ("report.json", "comparison.json", "comparison.md")
"""Files a job writes when it ends; a run cut short has not written them yet."""

TIME_KEYS = frozenset({"time", "created", "started", "finished", "create_time", "datetime_start",
                       "datetime_complete"})
"""JSON keys whose values are points in time (epoch seconds or ISO 8601) in the files the core writes."""
TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".journal", ".toml", ".log", ".md", ".txt", ".jinja"})


# ---------------------------------------------------------------------------------------------------------------
# The real jobs


def recording_settings(runs: Path, model: str = "demo", **sections: dict[str, Any]) -> Any:
    """Settings of a fast, reproducible job: a fixed batch size (the automatic search times the machine, and another
    batch size changes the last float bits) and trial batch, and the demo's built-in prompts also for a copy of the
    demo model in a folder (which would otherwise get the public datasets, and tests never reach the Hub)."""
    from heretic_tui.core.abliteration.prompts import DEMO_DEFAULTS
    from heretic_tui.core.settings import Settings

    settings = Settings()
    settings.model.model = model
    settings.model.batch_size = 32
    settings.abliteration.trial_batch = TRIAL_BATCH
    settings.output.runs_directory = str(runs)
    if model != "demo":
        for name, source in DEMO_DEFAULTS.items():
            setattr(settings.prompts, name, source)
    for section, values in sections.items():
        for name, value in values.items():
            setattr(getattr(settings, section), name, value)
    return settings


def _finish(handle: Any, expected: int, what: str) -> None:
    """Wait for a recorded job and check it ended as intended: anything else is a broken recording."""
    code = handle.wait(timeout=900)
    if code != expected:
        log = (handle.run.path / "worker.log").read_text(errors="replace")[-4000:]
        raise RuntimeError(f"recording {what}: the job ended with exit code {code}, expected {expected}:\n{log}")


def _wait_for_trials(handle: Any, count: int) -> None:
    events = handle.run.events_path
    deadline = time.monotonic() + 900
    while sum(isinstance(item, TrialFinished) for item in _read_events(events)) < count:
        if not handle.alive() or time.monotonic() > deadline:
            log = (handle.run.path / "worker.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"recording: {handle.run.path} did not reach {count} trials:\n{log}")
        time.sleep(0.05)


def record(root: Path) -> None:
    """Run every recorded job into ``root/runs`` (about a minute on an idle two-core machine)."""
    from heretic_tui.core.abliteration.job import start_abliteration
    from heretic_tui.core.finetuning.job import start_finetune
    from heretic_tui.core.models.demo import ensure_demo_model
    from heretic_tui.core.shipping.compare import start_compare
    from heretic_tui.core.shipping.export import start_export

    runs = root / "runs"
    runs.mkdir(parents=True)
    demo = ensure_demo_model()

    finished = runs / "finished"
    _finish(start_abliteration(recording_settings(runs, optimization={"trials": ABLITERATION_TRIALS}), finished),
            0, "a finished study")
    chosen = int(json.loads((finished / "report.json").read_text())["chosen_trial"])

    exported = finished / "exports" / f"trial-{chosen}"
    handle = start_export(finished, chosen, exported)
    _finish(handle, 0, "an export of the chosen trial")
    export_job = handle.run.path

    compare = runs / "compare"
    _finish(start_compare(["demo", f"{finished}#{chosen}"], "builtin:harmful@test",
                          recording_settings(runs, prompts={"max_eval_prompts": 8}), compare, max_new_tokens=12),
            0, "a comparison of the demo model and its chosen trial")

    documents = root / "documents"
    documents.mkdir()
    (documents / "zorbia.txt").write_text(" ".join([TRAINING_TEXT] * 8), encoding="utf-8")
    finetune = runs / "finetune"
    _finish(start_finetune(recording_settings(runs, str(exported), finetune={
        "training_data": [str(documents)], "max_steps": FINETUNE_MAX_STEPS, "logging_steps": 4, "checkpoint_steps": 8,
        "chunk_tokens": 24, "chunk_overlap": 6, "learning_rate": 1e-2, "per_device_batch_size": 4,
        "gradient_accumulation": 1, "lora_rank": 8, "lora_dropout": 0.0, "warmup_ratio": 0.0,
        "gradient_checkpointing": False, "knowledge_test_prompts": 2, "knowledge_test_tokens": 12,
        "merge_adapter": True}), finetune), 0, "a fine-tune of the exported trial")

    model_copy = root / "model-copies" / "demo"
    shutil.copytree(demo, model_copy)
    interrupted = recording_settings(runs, str(model_copy), optimization={"trials": INTERRUPTED_TRIALS})
    cancelled = runs / "cancelled"
    handle = start_abliteration(interrupted, cancelled)
    _wait_for_trials(handle, CANCEL_AFTER_TRIALS)
    handle.request_cancel()
    _finish(handle, 130, "a cancelled study")

    failed = runs / "failed"
    shutil.copytree(cancelled, failed)
    relocate(failed, {str(cancelled): str(failed)})
    shutil.rmtree(model_copy)
    _finish(start_abliteration(interrupted, failed, resume=True), 2,
            "a cancelled study resumed after its model folder was removed")
    shutil.copytree(demo, model_copy)

    killed = runs / "killed"
    handle = start_abliteration(recording_settings(runs, optimization={"trials": INTERRUPTED_TRIALS},
                                                   abliteration={"trial_batch": 1}), killed)
    _wait_for_trials(handle, KILL_AFTER_TRIALS)
    os.kill(int(json.loads((killed / "worker.json").read_text())["pid"]), signal.SIGKILL)
    handle.wait(timeout=120)

    places = {"finished": finished, "export": export_job, "compare": compare, "finetune": finetune,
              "cancelled": cancelled, "failed": failed, "killed": killed}
    manifest = {"format": RECORDING_FORMAT, "runs": {name: str(path.relative_to(root)) for name, path in places.items()}}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def recording_key(demo_model: Path) -> str:
    """What a recording depends on: the core's code, this module, the demo model's weights, library versions."""
    from importlib.metadata import version

    import heretic_tui.core

    digest = hashlib.sha256(str(RECORDING_FORMAT).encode())
    core = Path(heretic_tui.core.__file__).resolve().parent
    for path in sorted(core.rglob("*.py")) + [Path(__file__).resolve()]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for name in ("torch", "transformers", "optuna", "peft", "trl", "safetensors", "datasets"):
        digest.update(f"{name}={version(name)}".encode())
    for weights in sorted(demo_model.glob("*.safetensors")):
        digest.update(hashlib.sha256(weights.read_bytes()).digest())
    return digest.hexdigest()[:16]


def recording_environment(root: Path) -> dict[str, str]:
    """The recorded jobs' environment: the shared cache (the demo model), a home of their own, no Hub, one thread."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HERETIC_")}
    environment.update(
        XDG_CACHE_HOME=str(SHARED_CACHE), XDG_DATA_HOME=str(root / "home" / "data"),
        XDG_CONFIG_HOME=str(root / "home" / "config"), HF_HOME=str(root / "home" / "hf"), HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1", OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    return environment


UNUSED_RECORDING_SECONDS = 24 * 3600
"""A recording no session asked for in this long is removed (another session may still be using a recent one:
each core change makes a new recording, and sessions of several checkouts' states share the cache)."""
DEMO_MODEL = "from heretic_tui.core.models.demo import ensure_demo_model; print(ensure_demo_model())"
"""Builds the demo model when missing (a minute or two, once per checkout) and says where it is, in a process of
its own: the recording's key includes its weights, and the tests' process need not import torch."""


def recording() -> Recording:
    """The recording for this version of the core: made on first use (under a lock), then kept in the shared cache."""
    from filelock import FileLock

    cache = SHARED_CACHE / "tui-recordings"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / ".lock")):
        built = subprocess.run([sys.executable, "-c", DEMO_MODEL], cwd=cache, env=recording_environment(cache),
                               capture_output=True, text=True, timeout=1800)
        if built.returncode != 0:
            raise RuntimeError(f"building the demo model for the recording failed:\n{built.stderr[-4000:]}")
        target = cache / recording_key(Path(built.stdout.strip().splitlines()[-1]))
        if not (target / MANIFEST).is_file():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "record", str(target)],
                                    cwd=target, env=recording_environment(target), capture_output=True, text=True,
                                    timeout=840)
            if result.returncode != 0 or not (target / MANIFEST).is_file():
                raise RuntimeError(f"recording the real jobs failed (exit code {result.returncode}):\n"
                                   f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        os.utime(target / MANIFEST)
        for other in cache.iterdir():
            manifest = other / MANIFEST
            if other != target and other.is_dir() and (
                    not manifest.is_file() or time.time() - manifest.stat().st_mtime > UNUSED_RECORDING_SECONDS):
                shutil.rmtree(other, ignore_errors=True)
    return Recording(target)


# ---------------------------------------------------------------------------------------------------------------
# Placing recorded runs


def _read_events(path: Path) -> list[Event]:
    return list(read_journal(path).events)


def relocate(folder: Path, replacements: Mapping[str, str]) -> None:
    """Rewrite absolute paths in every text file under ``folder``: a copied run names its new place."""
    ordered = sorted(replacements.items(), key=lambda item: -len(item[0]))
    for path in folder.rglob("*"):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        changed = text
        for old, new in ordered:
            changed = changed.replace(old, new)
        if changed != text:
            stat = path.stat()
            path.write_text(changed, encoding="utf-8", errors="surrogateescape")
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _shift_value(key: str, value: Any, seconds: float) -> Any:
    if isinstance(value, bool) or key not in TIME_KEYS:
        return value
    if isinstance(value, (int, float)) and value > 1e9:
        return value + seconds
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        shifted = (moment + timedelta(seconds=seconds)).isoformat(timespec="microseconds" if "." in value
                                                                   else "seconds")
        return shifted.replace("+00:00", "Z") if value.endswith("Z") else shifted
    return value


def _shift_data(data: Any, seconds: float) -> Any:
    if isinstance(data, dict):
        return {key: _shift_data(_shift_value(key, value, seconds), seconds) for key, value in data.items()}
    if isinstance(data, list):
        return [_shift_data(item, seconds) for item in data]
    return data


def _shift_line(line: str, seconds: float) -> str:
    """One JSON line with its times moved; a line that is not JSON (a record cut by a kill) stays as it was."""
    body = line.rstrip("\n")
    try:
        data = json.loads(body)
    except ValueError:
        return line
    return json.dumps(_shift_data(data, seconds), ensure_ascii=False, separators=(",", ":")) + line[len(body):]


def shift_times(folder: Path, seconds: float) -> None:
    """Move every point in time under ``folder`` by ``seconds``: JSON time fields and file modification times."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        stat = path.stat()
        if path.suffix in (".jsonl", ".journal"):
            text = path.read_text(encoding="utf-8")
            lines = [_shift_line(line, seconds) for line in text.splitlines(keepends=True)]
            path.write_text("".join(lines), encoding="utf-8")
        elif path.suffix == ".json":
            text = path.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, (dict, list)):
                indent = 2 if text.lstrip("[{").startswith("\n") else None
                path.write_text(json.dumps(_shift_data(data, seconds), indent=indent, ensure_ascii=False),
                                encoding="utf-8")
        os.utime(path, (stat.st_atime + seconds, stat.st_mtime + seconds))
    for path in sorted((item for item in folder.rglob("*") if item.is_dir()), reverse=True) + [folder]:
        stat = path.stat()
        os.utime(path, (stat.st_atime + seconds, stat.st_mtime + seconds))


def _write_events(path: Path, events: Iterable[Event]) -> None:
    path.write_text("".join(item.to_json() + "\n" for item in events), encoding="utf-8")


def this_process() -> dict[str, Any]:
    """worker.json naming the test process itself: alive for as long as the test runs (never cancel such a run:
    the cancel signal would reach the test; start a stand-in worker with :func:`start_fake_worker` instead)."""
    import psutil

    me = psutil.Process(os.getpid())
    return {"pid": me.pid, "create_time": me.create_time()}


@dataclass
class RecordedRun:
    """A placed run folder, its journal as placed, and the real events that followed (for a run cut short)."""

    path: Path
    events: list[Event]
    rest: list[Event] = field(default_factory=list)

    @property
    def trials(self) -> dict[int, TrialFinished]:
        """The finished trials in the placed journal, by number (a resumed study's later result wins)."""
        return {item.number: item for item in self.events if isinstance(item, TrialFinished)}

    @property
    def steps(self) -> list[TrainingStep]:
        return [item for item in self.events if isinstance(item, TrainingStep)]

    @property
    def report(self) -> dict[str, Any] | None:
        path = self.path / "report.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def read(self, name: str) -> dict[str, Any]:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def append(self, *items: Event) -> None:
        """Append events to the journal, as the worker would (one line each, flushed at once)."""
        with open(self.path / "events.jsonl", "a", encoding="utf-8") as handle:
            for item in items:
                handle.write(item.to_json() + "\n")
        self.events.extend(items)

    def play_on(self, until: Callable[[Event], bool] | None = None) -> list[Event]:
        """Append the recorded events that followed the cut, up to the first one ``until`` accepts (all without).

        Their times are the recorded ones (shifted with the run), so a dashboard sees the run go on as it did.
        """
        played: list[Event] = []
        while self.rest:
            item = self.rest.pop(0)
            played.append(item)
            if until is not None and until(item):
                break
        else:
            if until is not None:
                raise AssertionError(f"the recorded run {self.path.name} has no such event after its cut")
        self.append(*played)
        return played


def trial_finished(number: int) -> Callable[[Event], bool]:
    """For :meth:`RecordedRun.play_on`: up to the end of trial ``number``."""
    return lambda item: isinstance(item, TrialFinished) and item.number == number


def step_logged(step: int) -> Callable[[Event], bool]:
    """For :meth:`RecordedRun.play_on`: up to the training step ``step`` (its last event)."""
    return lambda item: isinstance(item, TrainingStep) and item.step >= step


def _cut_index(events: list[Event], trials: int | None, steps: int | None, path: Path) -> int:
    """How many events a run cut short keeps: through the start of trial ``trials`` and of the trials started in
    the same batch after it (then in flight together, as a batched pass runs them), or through the last event of
    training step ``steps``."""
    if trials is not None:
        for index, item in enumerate(events):
            if isinstance(item, TrialStarted) and item.number == trials:
                end = index + 1
                while end < len(events) and isinstance(events[end], TrialStarted):
                    end += 1
                return end
        numbers = sorted({item.number for item in events if isinstance(item, TrialStarted)})
        raise ValueError(f"{path} has no trial {trials} to cut at; its trials: {numbers}")
    assert steps is not None
    last = None
    for index, item in enumerate(events):
        if isinstance(item, TrainingStep) and item.step <= steps:
            last = index
        elif isinstance(item, TrainingStep):
            break
    if last is None:
        raise ValueError(f"{path} logs no training step up to {steps}")
    return last + 1


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _log_signature(item: Event) -> tuple[str, bool] | None:
    """How the worker printed an event to worker.log: a line's text (True: the whole line, False: its start)."""
    first = _first_line
    if isinstance(item, LogLine):
        return first(item.message), True
    if isinstance(item, JobWarning):
        return f"warning: {first(item.message)}", True
    if isinstance(item, PhaseStarted):
        return f"phase {item.phase}: {first(item.description)}", True
    if isinstance(item, TrialFinished):
        return f"trial {item.number}: ", False
    if isinstance(item, TrainingStep):
        return ("{'loss'", False) if item.loss is not None else ("{'eval_loss'", False) if item.eval_loss is not None \
            else None
    if isinstance(item, JobError):
        return f"error: {first(item.message)}", True
    return None


def _cut_log(path: Path, kept: list[Event], rest: list[Event]) -> None:
    """Cut worker.log where the first event after a journal's cut was printed (what followed was not yet)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept_signatures = [signature for signature in map(_log_signature, kept) if signature is not None]
    cut = len(lines)
    for item in rest:
        signature = _log_signature(item)
        if signature is None:
            continue
        text, whole = signature
        earlier = kept_signatures.count(signature)
        matches = [index for index, line in enumerate(lines)
                   if (line.rstrip("\n") == text if whole else line.startswith(text))]
        if len(matches) > earlier:
            cut = min(cut, matches[earlier])
    path.write_text("".join(lines[:cut]), encoding="utf-8")


@dataclass
class Recording:
    """The recorded run folders (read-only: tests place copies)."""

    root: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))

    def path(self, name: str) -> Path:
        """Where the recorded run ``name`` is: finished, export, compare, finetune, cancelled, failed or killed."""
        return self.root / self.manifest["runs"][name]

    def place(self, name: str, destination: Path, as_name: str | None = None, *, start: float = START,
              trials: int | None = None, steps: int | None = None, outputs: bool = True) -> RecordedRun:
        """Copy the recorded run ``name`` to ``destination/as_name`` (see :meth:`place_together`)."""
        placed = self.place_together({name: as_name or self.path(name).name}, destination, start=start,
                                     cuts={name: (trials, steps)}, outputs=outputs)
        return placed[name]

    def place_together(self, names: Mapping[str, str], destination: Path, *, start: float = START,
                       cuts: Mapping[str, tuple[int | None, int | None]] | None = None,
                       outputs: bool = True) -> dict[str, RecordedRun]:
        """Copy recorded runs that name each other (a fine-tune of an export of a study) into one folder.

        Paths between the placed runs are rewritten to their new places, and all their times move by one amount, so
        the first of them starts at ``start``. ``cuts`` maps a run to ``(trials, steps)``: cut after that many
        finished trials (the next one in flight) or after that training step. ``outputs=False`` leaves out what a
        job produced besides its own files (exports, adapters, merged models, export jobs, checkpoints).
        """
        destination.mkdir(parents=True, exist_ok=True)
        sources = {name: self.path(name) for name in names}
        targets = {name: destination / as_name for name, as_name in names.items()}
        created = min(json.loads((source / "job.json").read_text())["created"] for source in sources.values())
        placed: dict[str, RecordedRun] = {}
        for name, source in sources.items():
            target = targets[name]
            if target.exists():
                raise FileExistsError(f"{target} exists already: place each run under a name of its own")
            cut = (cuts or {}).get(name, (None, None))
            skipped = set() if outputs and cut == (None, None) else set(OUTPUT_FOLDERS)
            shutil.copytree(source, target, ignore=lambda folder, entries: [
                entry for entry in entries if Path(folder) == source and entry in skipped])
        for target in targets.values():
            relocate(target, {str(sources[name]): str(targets[name]) for name in names})
            shift_times(target, start - created)
        for name, target in targets.items():
            events = _read_events(target / "events.jsonl")
            rest: list[Event] = []
            trials, steps = (cuts or {}).get(name, (None, None))
            if trials is not None or steps is not None:
                index = _cut_index(events, trials, steps, self.path(name))
                events, rest = events[:index], events[index:]
                _write_events(target / "events.jsonl", events)
                _cut_log(target / "worker.log", events, rest)
                for file in END_FILES:
                    (target / file).unlink(missing_ok=True)
                worker = json.loads((target / "worker.json").read_text())
                live = {key: value for key, value in worker.items() if key not in ("exit_code", "finished")}
                (target / "worker.json").write_text(json.dumps({**live, **this_process()}, indent=2))
            placed[name] = RecordedRun(target, events, rest)
        return placed


FAKE_WORKER = r"""
import json, os, signal, sys, time
import psutil
run, cancelled = sys.argv[1], sys.argv[2]
me = psutil.Process()
with open(os.path.join(run, "worker.json"), "w") as handle:
    json.dump({"pid": os.getpid(), "create_time": me.create_time(), "started": time.time()}, handle)

def cancel(signum, frame):
    with open(os.path.join(run, "events.jsonl"), "a") as handle:
        handle.write(json.dumps({**json.loads(cancelled), "time": time.time()}) + "\n")
    with open(os.path.join(run, "worker.json"), "w") as handle:
        json.dump({"pid": os.getpid(), "create_time": me.create_time(), "exit_code": 130, "finished": time.time()},
                  handle)
    sys.exit(130)

signal.signal(signal.SIGTERM, cancel)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
print("fake worker ready", flush=True)
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.05)
"""
"""The stand-in ends with the test process that started it, so a killed test run leaves nothing behind."""


def start_fake_worker(run: RecordedRun, recorded: Recording | None = None) -> subprocess.Popen[bytes]:
    """A stand-in worker for a run cut short: alive, named in worker.json, and on SIGTERM it cancels like the real
    one (it appends the recorded cancelled study's job_cancelled event and exits 130). Returns once worker.json
    names it."""
    recorded = recorded or recording()
    cancelled = next(item for item in _read_events(recorded.path("cancelled") / "events.jsonl")
                     if isinstance(item, JobCancelled))
    (run.path / "worker.json").unlink(missing_ok=True)
    with open(run.path / "worker.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, str(run.path), cancelled.to_json()],
                                   stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if json.loads((run.path / "worker.json").read_text()).get("pid") == process.pid:
                return process
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    process.kill()
    raise RuntimeError("the stand-in worker did not write worker.json within 60s")


# ---------------------------------------------------------------------------------------------------------------
# The screen scene: one recording placed once and committed (see the module docstring)

SCENE = HERE / "scene"
SCENE_FILE = "scene.json"
SCENE_ROOT = "/tmp/heretic-tui-snapshots"
"""The folder every committed scene file names; :func:`write_screen_scene` rewrites it to the scene's real place,
and screenshots show that place by this name again (see :func:`scene_folder`)."""
SCENE_TAIL = 8
"""The characters of a scene folder's name that differ between folders (tempfile's random part)."""
SCENE_HOME = "/home/user"
"""Where the committed scene says the recording's own folders were (the demo model's copy, the training data, runs
it does not include), the shared test cache and this checkout: a scene names no folder of the machine it was
recorded on, and none that differs from test to test."""
FIXED_NOW = START + 120.0
"""The clock of every screen test and capture."""
SCENE_SKIPPED_NAMES = frozenset({"study.journal", "tokenizer.json", ".lock"})
SCENE_SKIPPED_FOLDERS = frozenset({"checkpoints", "data"})


@dataclass(frozen=True)
class ScenePart:
    """Recorded runs placed together into one folder of the scene, by role."""

    folder: str
    roles: Mapping[str, str]
    """Role in the scene -> recorded run."""
    start: float | None = None
    """When the first of them starts; None: so that the run in flight logged its last event just before the clock."""
    cut: tuple[int | None, int | None] = (None, None)
    outputs: bool = True


SCENE_PARTS = (
    ScenePart("runs", {"finished": "finished"}, start=START - 3 * 3600, outputs=False),
    ScenePart("runs", {"failed": "failed"}, start=START - 2 * 3600),
    ScenePart("runs", {"cancelled": "cancelled"}, start=START - 26 * 3600),
    ScenePart("runs", {"running": "killed"}, cut=(6, None)),
    ScenePart("finetune-runs", {"finetune": "finetune"}, start=START - 3600),
    ScenePart("finetune-runs", {"finetune-running": "finetune"}, cut=(None, 12)),
    ScenePart("lineage-runs", {"lineage-study": "finished", "lineage-finetune": "finetune"}, start=START - 5 * 3600),
)
"""The home and runs screens show ``runs`` (four studies, as a person would have them after a day's work), the
fine-tune dashboards ``finetune-runs``, the lineage screen ``lineage-runs`` (a study, its export, a fine-tune of it)."""


def _run_name(created: float, model: str) -> str:
    """The folder name the core gives a run (its start time and the model's name)."""
    from heretic_tui.core.runs.run_directory import slugify

    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(created)) + "-" + slugify(model)


def build_scene(recording: Recording, root: Path) -> dict[str, str]:
    """Place the scene's runs under ``root``; returns role -> folder relative to ``root``."""
    roles: dict[str, str] = {}
    for part in SCENE_PARTS:
        folder = root / part.folder
        start = part.start
        if start is None:
            [(role, name)] = part.roles.items()
            events = _read_events(recording.path(name) / "events.jsonl")
            kept = events[:_cut_index(events, *part.cut, recording.path(name))]
            created = json.loads((recording.path(name) / "job.json").read_text())["created"]
            start = FIXED_NOW - 0.5 - (kept[-1].time - created)
        names = {}
        for role, name in part.roles.items():
            offset = json.loads((recording.path(name) / "job.json").read_text())["created"] - min(
                json.loads((recording.path(other) / "job.json").read_text())["created"] for other in part.roles.values())
            model = json.loads((recording.path(name) / "job.json").read_text())["model"]
            names[role] = _run_name(start + offset, model)
        cuts = {name: part.cut for name in part.roles.values()}
        placed = recording.place_together({part.roles[role]: names[role] for role in part.roles}, folder,
                                          start=start, cuts=cuts, outputs=part.outputs)
        for role, name in part.roles.items():
            roles[role] = str(placed[name].path.relative_to(root))
    return roles


def write_scene_files(recording: Recording, target: Path = SCENE) -> None:
    """Write the committed scene again from ``recording`` (``python tests/tui/recorded_runs.py scene``)."""
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix="heretic-tui-scene-"))
    try:
        roles = build_scene(recording, staging)
        shutil.rmtree(target, ignore_errors=True)
        mtimes: dict[str, float] = {}
        for path in sorted(staging.rglob("*")):
            relative = path.relative_to(staging)
            if not path.is_file() or path.suffix not in TEXT_SUFFIXES or path.name in SCENE_SKIPPED_NAMES \
                    or SCENE_SKIPPED_FOLDERS & set(relative.parts[:-1]):
                continue
            copy = target / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            mtimes[str(relative)] = round(path.stat().st_mtime, 3)
        relocate(target, {str(staging): SCENE_ROOT, str(recording.root): SCENE_HOME,
                          str(SHARED_CACHE): f"{SCENE_HOME}/.cache", str(ROOT): f"{SCENE_HOME}/heretic-tui"})
        running = [role for part in SCENE_PARTS if part.cut != (None, None) for role in part.roles]
        (target / SCENE_FILE).write_text(json.dumps({"roles": roles, "running": running, "mtimes": mtimes},
                                                    indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def scene_folder() -> Path:
    """A new folder for one placed scene, of its own and as long as :data:`SCENE_ROOT`: its name is SCENE_ROOT's
    without the last :data:`SCENE_TAIL` characters, then tempfile's random part of that length.

    Screens show paths, wrapped or cut to fit; a folder of another length (pytest's ``tmp_path`` depends on the
    user, the session and the test's name) would move every wrap and cut. With the same length, the screen is the
    accepted one once :func:`shown_as_scene_root` renames the folder.
    """
    import tempfile

    head = Path(SCENE_ROOT[:-SCENE_TAIL])
    folder = Path(tempfile.mkdtemp(prefix=head.name, dir=head.parent))
    if len(str(folder)) != len(SCENE_ROOT):
        shutil.rmtree(folder)
        raise RuntimeError(f"tempfile made {folder}, not a name as long as {SCENE_ROOT}")
    return folder


def shown_as_scene_root(text: str, root: Path) -> str:
    """``text`` (a screenshot, a capture) with the scene folder ``root`` shown as :data:`SCENE_ROOT`, also where the
    screen cut a path inside the folder's random part (its fixed head is never a cut's whole remainder there)."""
    head, tail = str(root)[:-SCENE_TAIL], str(root)[-SCENE_TAIL:]
    for length in range(SCENE_TAIL, 0, -1):
        text = text.replace(head + tail[:length], SCENE_ROOT[:len(head) + length])
    return text


@dataclass(frozen=True)
class Scene:
    """The screen scene placed under ``root``: its runs by role, a model cache and a model folder for the browser."""

    root: Path
    roles: Mapping[str, str]

    def path(self, role: str) -> Path:
        return self.root / self.roles[role]

    @property
    def models(self) -> Path:
        return self.root / "models"

    def settings(self) -> Any:
        """The settings every screen of the scene opens with: its runs folder and its model folder."""
        from heretic_tui.core.settings import Settings

        settings = Settings()
        settings.output.runs_directory = str(self.root / "runs")
        settings.output.model_directories = [str(self.models)]
        return settings

    def environment(self) -> dict[str, str]:
        """User folders inside the scene: its Hugging Face cache, and a user cache without the demo model."""
        return {"HF_HUB_CACHE": str(self.root / "hf-cache"), "HF_HOME": str(self.root / "hf-home"),
                "XDG_CACHE_HOME": str(self.root / "cache"), "XDG_DATA_HOME": str(self.root / "data"),
                "XDG_CONFIG_HOME": str(self.root / "config")}


def write_screen_scene(root: Path) -> Scene:
    """The runs every screen capture shows (snapshot tests and docs/screens.md alike), placed under ``root``.

    Runs in flight name the calling process as their worker (see :func:`this_process`). Paths on screen take the
    room they take in the accepted screenshots when ``root`` is as long as :data:`SCENE_ROOT`. Next to the runs: a
    Hugging Face cache and a model folder for the model browser (metadata only, see model_folders).
    """
    from model_folders import build_hub_cache, write_model_files

    description = json.loads((SCENE / SCENE_FILE).read_text(encoding="utf-8"))
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SCENE, root, dirs_exist_ok=True,
                    ignore=lambda folder, entries: [SCENE_FILE] if Path(folder) == SCENE else [])
    relocate(root, {SCENE_ROOT: str(root)})
    for role in description["running"]:
        worker = root / description["roles"][role] / "worker.json"
        worker.write_text(json.dumps({**json.loads(worker.read_text()), **this_process()}, indent=2))
    for relative, mtime in description["mtimes"].items():
        os.utime(root / relative, (mtime, mtime))
    scene = Scene(root, description["roles"])
    build_hub_cache(root / "hf-cache", "acme/tiny-chat")
    write_model_files(scene.models / "base-model", architecture="MistralForCausalLM", template=False)
    return scene


def scene_shape(root: Path, roles: Mapping[str, str]) -> dict[str, list[str]]:
    """What a scene's runs are made of, without their values: files, JSON keys, event kinds and their fields.

    Two scenes of the same shape are read by the screens the same way, whatever numbers the demo model gave."""
    shape: dict[str, list[str]] = {}
    for role, relative in sorted(roles.items()):
        folder = root / relative
        items: set[str] = set()
        for path in folder.rglob("*"):
            name = str(path.relative_to(folder))
            if not path.is_file() or path.suffix not in TEXT_SUFFIXES or path.name in SCENE_SKIPPED_NAMES \
                    or SCENE_SKIPPED_FOLDERS & set(Path(name).parts[:-1]) or name.startswith("jobs/"):
                continue
            items.add(f"file {name}")
            if path.suffix == ".jsonl":
                for item in _read_events(path):
                    data = json.loads(item.to_json())
                    label = f"{data['type']}:{data['name']}" if data["type"] == "metrics" else data["type"]
                    items.add(f"event {label} {sorted(data)}")
            elif path.suffix == ".json":
                items.update(f"{name} {key}" for key in _key_paths(json.loads(path.read_text(encoding="utf-8"))))
        shape[role] = sorted(items)
    return shape


def _key_paths(data: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield f"{prefix}.{key}"
            yield from _key_paths(value, f"{prefix}.{key}")
    elif isinstance(data, list):
        for item in data:
            yield from _key_paths(item, f"{prefix}[]")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    elif sys.argv[1:] == ["scene"]:
        write_scene_files(recording())
        print(f"wrote {SCENE}; now update the snapshots (pytest tests/tui/test_snapshots.py --snapshot-update), "
              "look at them, and run tests/tui/capture_screens.py")
    else:
        print("usage: python tests/tui/recorded_runs.py scene   (or: record FOLDER)", file=sys.stderr)
        sys.exit(2)
