"""Which checkpoints a run keeps, and which one it resumes from.

The transformers Trainer keeps the *newest* N checkpoints; a user wants the *best* ones by validation loss (the
adapter worth shipping may be from before the model started to overfit) and, to resume, the newest one as well.
A checkpoint folder is complete once its ``trainer_state.json`` holds a whole JSON object (the Trainer writes it
last, and not atomically: a full disk can cut it short), so a worker killed or starved of space in the middle of a
save leaves a folder that is ignored and removed instead of one that breaks the resume.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from heretic_tui.core.atomic_files import read_json_object

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


def checkpoint_step(path: Path) -> int:
    match = CHECKPOINT_PATTERN.match(path.name)
    return int(match.group(1)) if match else -1


def checkpoint_folders(folder: Path) -> list[Path]:
    """Every checkpoint folder, complete or not, oldest first."""
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.match(path.name)]
    return sorted(found, key=checkpoint_step)


def is_complete(checkpoint: Path) -> bool:
    """Whether the Trainer finished writing this checkpoint: its state file (written last) reads back whole."""
    return "global_step" in read_json_object(checkpoint / STATE_FILE)


def complete_checkpoints(folder: Path) -> list[Path]:
    return [path for path in checkpoint_folders(folder) if is_complete(path)]


def remove_incomplete_checkpoints(folder: Path) -> list[Path]:
    """Delete checkpoints a kill or a full disk interrupted while they were written; returns what was removed."""
    removed = [path for path in checkpoint_folders(folder) if not is_complete(path)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def last_checkpoint(folder: Path) -> Path | None:
    complete = complete_checkpoints(folder)
    return complete[-1] if complete else None


def evaluation_losses(log_history: list[dict[str, Any]]) -> dict[int, float]:
    """Validation loss by step, from the Trainer's log history."""
    return {int(entry["step"]): float(entry["eval_loss"]) for entry in log_history if "eval_loss" in entry}


def checkpoints_to_keep(steps: list[int], losses: dict[int, float], keep: int) -> set[int]:
    """The best ``keep`` steps by validation loss, plus the newest (for resuming); newest ``keep`` without losses."""
    if not steps:
        return set()
    ranked = sorted((losses[step], step) for step in steps if step in losses)
    chosen = {step for _, step in ranked[:keep]} if ranked else set(steps[-keep:])
    chosen.add(steps[-1])
    return chosen


def rotate_checkpoints(folder: Path, log_history: list[dict[str, Any]], keep: int) -> list[Path]:
    """Delete complete checkpoints that are neither among the best ``keep`` nor the newest; returns them."""
    complete = complete_checkpoints(folder)
    steps = [checkpoint_step(path) for path in complete]
    kept = checkpoints_to_keep(steps, evaluation_losses(log_history), keep)
    removed = [path for path in complete if checkpoint_step(path) not in kept]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
