"""Every exit code the README and ``--help`` document is what a real scenario through the command line returns.

Each scenario runs ``python -m heretic_tui.cli`` as its own process (a real exit status, a real worker), on the
tiny fine-tuning model: success, a worker killed the way the out-of-memory killer kills it, bad input, a disk that
is full, a Hub that refuses connections, and Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from finetuning.finetune_helpers import FACTS, build_model
from private_tmpfs import tmpfs_problem
from heretic_tui.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_STORAGE,
)
from heretic_tui.core.runs.events import TrainingStep
from heretic_tui.core.runs.run_directory import RunDirectory

FAST = ["--set", "finetune.chunk_tokens=24", "--set", "finetune.chunk_overlap=6", "--set",
        "finetune.gradient_checkpointing=false", "--set", "finetune.knowledge_test_prompts=1", "--set",
        "finetune.knowledge_test_tokens=4", "--set", "finetune.per_device_batch_size=2", "--set",
        "finetune.gradient_accumulation=1", "--set", "finetune.warmup_ratio=0"]
DEADLINE = 300.0


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """One math thread in the workers: on a shared 2-core machine oversubscription makes tiny steps crawl."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("exit-codes") / "model")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "facts.txt"
    path.write_text(" ".join(FACTS * 6), encoding="utf-8")
    return path


def finetune(model: Path, data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "heretic_tui.cli", "finetune", "--headless", "--model", str(model), "--data",
            str(data), "--run-dir", str(run_dir), *FAST, *extra]


def finished(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, error = process.communicate(timeout=DEADLINE)
    return process.returncode, error


def when_training(run_dir: Path, process: subprocess.Popen[str], act: Callable[[], None]) -> None:
    """Call ``act`` once the worker has run a few optimizer steps (the run is well inside its work)."""
    deadline = time.time() + DEADLINE
    while True:
        if (run_dir / "events.jsonl").exists():
            steps = [item for item in RunDirectory(run_dir).read_events() if isinstance(item, TrainingStep)
                     and item.loss is not None]
            if len(steps) >= 2:
                act()
                return
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "the worker never started training"
        time.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def success(model: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    process = subprocess.Popen(finetune(model, data, tmp_path / "run", "--max-steps", "2"), stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    return finished(process)


def long_run(model: Path, data: Path, run_dir: Path) -> subprocess.Popen[str]:
    """A fine-tune that would train for hours: the scenarios stop it from outside."""
    return subprocess.Popen(finetune(model, data, run_dir, "--max-steps", "100000", "--set", "finetune.logging_steps=1"),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def worker_killed(model: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    run_dir = tmp_path / "run"
    process = long_run(model, data, run_dir)
    when_training(run_dir, process, lambda: os.kill(int(RunDirectory(run_dir).read_worker()["pid"]), signal.SIGKILL))
    return finished(process)


def bad_input(model: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    process = subprocess.Popen(finetune(model, data, tmp_path / "run", "--learning-rate", "nan"),
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    return finished(process)


def disk_full(model: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    problem = tmpfs_problem()
    if problem:
        pytest.skip(f"needs a tmpfs that can really fill up: {problem}")
    disk = tmp_path / "disk"
    disk.mkdir()
    command = " ".join(f"'{part}'" for part in finetune(model, data, disk / "run", "--max-steps", "2"))
    script = (f"mount -t tmpfs -o size=64k tmpfs '{disk}' && dd if=/dev/zero of='{disk}/filler' bs=4k count=64 "
              f"2>/dev/null; exec {command}")
    process = subprocess.Popen(["unshare", "-rm", "sh", "-c", script], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    return finished(process)


def hub_unreachable(model: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
                   "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    arguments = finetune(model, data, tmp_path / "run", "--set", "hub.request_retries=0")
    arguments[arguments.index(str(data))] = "hf:someone/facts@train#text"
    process = subprocess.Popen(arguments, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=environment)
    return finished(process)


def interrupted(model: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    run_dir = tmp_path / "run"
    process = long_run(model, data, run_dir)
    when_training(run_dir, process, lambda: process.send_signal(signal.SIGINT))
    return finished(process)


SCENARIOS: dict[int, tuple[Callable[[Path, Path, Path], tuple[int, str]], str]] = {
    EXIT_OK: (success, "eval loss "),
    EXIT_FAILED: (worker_killed, "error: "),
    EXIT_BAD_INPUT: (bad_input, "error: Command line: the value nan for 'finetune.learning_rate' is not valid"),
    EXIT_STORAGE: (disk_full, "the disk is full"),
    EXIT_NETWORK: (hub_unreachable, "refused the connection"),
    EXIT_CANCELLED: (interrupted, "cancelled"),
}
"""Exit code -> the scenario that must produce it, and a phrase its stderr must hold."""


def test_every_documented_exit_code_has_a_scenario() -> None:
    assert sorted(SCENARIOS) == sorted(item.code for item in EXIT_CODES)


@pytest.mark.slow
@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_each_exit_code_comes_from_its_scenario(code: int, model: Path, data: Path, tmp_path: Path) -> None:
    scenario, phrase = SCENARIOS[code]
    returned, error = scenario(model, data, tmp_path)
    assert returned == code, error[-4000:]
    assert phrase in error, error[-4000:]
    assert "Traceback" not in error, error[-4000:]
