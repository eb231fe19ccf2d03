"""Run inside a private mount namespace on a small tmpfs: a fine-tune whose disk fills up at a given moment.

``python disk_full_scenario.py MODEL DATA RUN_DIR WHEN`` starts a real fine-tune (detached worker) in RUN_DIR, stops
the worker (SIGSTOP) at WHEN ("checkpoint": once the first checkpoint is complete; "merge": once the adapter is
written, before the merge), fills the file system up to a small slack, lets the worker go on, and records how the
job ended and what the run folder holds. Then it frees the space, resumes the run, and records that too. The
result is one JSON object on stdout. Used by test_finetune_disk_full.py through ``unshare -rm``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_helpers import finetune_settings  # noqa: E402
from heretic_tui.core.finetuning.checkpoints import checkpoint_folders, complete_checkpoints  # noqa: E402
from heretic_tui.core.finetuning.job import start_finetune  # noqa: E402
from heretic_tui.core.runs.events import ArtifactWritten, JobError, JobFinished  # noqa: E402

SLACK = 192 * 1024
"""Space left free: enough for the journal and log lines of the failure, far less than a checkpoint or a model."""
DEADLINE = 240.0


def fill(folder: Path, slack: int) -> Path:
    """Write a file until the file system is full, then give back ``slack`` bytes."""
    filler = folder / "filler.bin"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (b"\0" * (1024 * 1024), b"\0" * 4096):
            try:
                while True:
                    os.write(descriptor, chunk)
            except OSError:
                pass
        os.ftruncate(descriptor, max(0, os.fstat(descriptor).st_size - slack))
    finally:
        os.close(descriptor)
    return filler


def wait_for(condition: Any, what: str, run_dir: Path) -> None:
    deadline = time.time() + DEADLINE
    while not condition():
        if time.time() > deadline:
            log = (run_dir / "worker.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"timed out waiting for {what}; worker.log ends:\n{log}")
        time.sleep(0.005)


def run_folder_state(run_dir: Path) -> dict[str, Any]:
    checkpoints = run_dir / "checkpoints"
    return {
        "checkpoints": [path.name for path in checkpoint_folders(checkpoints)],
        "complete_checkpoints": [path.name for path in complete_checkpoints(checkpoints)],
        "adapter": (run_dir / "adapter").exists(),
        "merged": (run_dir / "merged").exists(),
        "report": (run_dir / "report.json").exists(),
        "hidden": sorted(path.name for path in run_dir.iterdir() if path.name.startswith(".")
                         and ("partial" in path.name or "tmp" in path.name)),
    }


def main() -> None:
    model, data, run_dir, when = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    if when == "checkpoint":
        settings = finetune_settings(model, [data], max_steps=300, checkpoint_steps=100, logging_steps=50,
                                     lora_rank=64, lora_alpha=64, knowledge_test_prompts=1)
    else:
        settings = finetune_settings(model, [data], max_steps=8, checkpoint_steps=4, merge_adapter=True,
                                     knowledge_test_prompts=1)
    handle = start_finetune(settings, run_dir)
    if when == "checkpoint":
        wait_for(lambda: complete_checkpoints(run_dir / "checkpoints"), "the first checkpoint", run_dir)
    else:
        wait_for(lambda: any(isinstance(item, ArtifactWritten) and item.name == "adapter"
                             for item in handle.run.read_events()), "the adapter", run_dir)
    worker = int(handle.run.read_worker()["pid"])
    os.kill(worker, signal.SIGSTOP)
    stopped_at = run_folder_state(run_dir)
    filler = fill(run_dir.parent, SLACK)
    os.kill(worker, signal.SIGCONT)
    events = list(handle.events(poll_seconds=0.02))
    last = events[-1]
    result: dict[str, Any] = {
        "stopped_at": stopped_at,
        "last_event": type(last).__name__,
        "exit_code": last.exit_code if isinstance(last, JobError) else None,
        "message": last.message if isinstance(last, JobError) else "",
        "worker_exit_code": handle.wait(timeout=60),
        "after_failure": run_folder_state(run_dir),
        "log": (run_dir / "worker.log").read_text(errors="replace")[-4000:],
    }
    filler.unlink()
    resumed = start_finetune(settings, run_dir, resume=True)
    events = list(resumed.events(poll_seconds=0.02))
    report = resumed.run.read_report() or {}
    result.update(
        resumed_last_event=type(events[-1]).__name__,
        resumed_message=getattr(events[-1], "message", ""),
        resumed_from=report.get("resumed_from"),
        resumed_steps=report.get("steps"),
        after_resume=run_folder_state(run_dir),
        finished=isinstance(events[-1], JobFinished),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
