"""A full disk while fine-tuning: at a checkpoint or at the merge the run ends with one StorageError paragraph
(exit code 3), leaves nothing half-written that looks complete, and resumes from its last complete checkpoint once
space is back. The disk is a real small tmpfs in a private mount namespace, filled up while the worker is paused."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from heretic_tui.core.errors import EXIT_STORAGE, StorageError
from heretic_tui.core.finetuning import storage
from heretic_tui.core.finetuning.checkpoints import complete_checkpoints, remove_incomplete_checkpoints
from heretic_tui.core.finetuning.storage import storage_failures
from finetune_helpers import FACTS, build_model
from private_tmpfs import tmpfs_problem

SCENARIO = Path(__file__).resolve().parent / "disk_full_scenario.py"


def test_a_storage_errno_anywhere_in_the_chain_is_a_storage_error(tmp_path: Path) -> None:
    cleaned: list[bool] = []
    with pytest.raises(StorageError, match=rf"Could not write a checkpoint into {tmp_path}: the disk is full"):
        with storage_failures(tmp_path, "write a checkpoint into", 1, lambda: cleaned.append(True)):
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as error:
                raise RuntimeError("wrapped by a library") from error
    assert cleaned == [True]
    with pytest.raises(StorageError, match="the file system is read-only"):
        with storage_failures(tmp_path, "write the adapter into", 1):
            raise OSError(errno.EROFS, "Read-only file system")


def test_an_error_without_errno_counts_as_a_full_disk_only_when_space_ran_out(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's writer says "unexpected pos" and safetensors its own error; only the free space tells them apart."""
    monkeypatch.setattr(storage, "free_bytes", lambda folder: 4096)
    with pytest.raises(StorageError, match=r"the disk is full"):
        with storage_failures(tmp_path, "write a checkpoint into", 10**6):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(storage, "free_bytes", lambda folder: 10**12)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with storage_failures(tmp_path, "write a checkpoint into", 10**6):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    with pytest.raises(ValueError, match="a bug"):
        with storage_failures(tmp_path, "write a checkpoint into", 1):
            raise ValueError("a bug")


def test_a_checkpoint_whose_state_file_was_cut_short_is_not_complete(tmp_path: Path) -> None:
    for step, state in ((4, '{"global_step": 4, "log_history": []}'), (8, '{"global_step": 8, "log_hi'),
                        (12, "")):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        (folder / "trainer_state.json").write_text(state)
    assert [path.name for path in complete_checkpoints(tmp_path)] == ["checkpoint-4"]
    assert [path.name for path in remove_incomplete_checkpoints(tmp_path)] == ["checkpoint-8", "checkpoint-12"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-4"]


def run_scenario(tmp_path: Path, model: Path, when: str, size: str) -> dict:
    data = tmp_path / "facts.txt"
    data.write_text(" ".join(FACTS * 8), encoding="utf-8")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f'mount -t tmpfs -o size={size} tmpfs "{disk}" && exec "{sys.executable}" "{SCENARIO}" "{model}" '
              f'"{data}" "{disk / "run"}" {when}')
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


needs_namespaces = pytest.mark.skipif(tmpfs_problem() is not None, reason=f"needs a tmpfs that can really fill up: {tmpfs_problem()}")


@pytest.mark.slow
@needs_namespaces
def test_a_disk_that_fills_at_a_checkpoint_stops_with_exit_3_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    outcome = run_scenario(tmp_path, tiny_model, "checkpoint", "24m")
    assert outcome["last_event"] == "JobError" and outcome["exit_code"] == EXIT_STORAGE, outcome
    assert outcome["worker_exit_code"] == EXIT_STORAGE
    assert outcome["message"].startswith("Could not write a checkpoint into ") and "the disk is full" in \
        outcome["message"], outcome["message"]
    assert "\n" not in outcome["message"] and "Traceback" not in outcome["message"]
    failed = outcome["after_failure"]
    assert failed["checkpoints"] == failed["complete_checkpoints"] == outcome["stopped_at"]["complete_checkpoints"]
    assert not failed["adapter"] and not failed["report"] and failed["hidden"] == []
    assert outcome["finished"], outcome["resumed_message"]
    assert outcome["resumed_from"] == failed["complete_checkpoints"][-1] and outcome["resumed_steps"] == 300


@pytest.mark.slow
@needs_namespaces
def test_a_disk_that_fills_at_the_merge_stops_with_exit_3_and_resumes(tmp_path: Path) -> None:
    model = build_model(tmp_path / "model", hidden=256)
    outcome = run_scenario(tmp_path, model, "merge", "48m")
    assert outcome["last_event"] == "JobError" and outcome["exit_code"] == EXIT_STORAGE, outcome
    message = outcome["message"]
    assert message.startswith("Could not write ") and "merged" in message and "the disk is full" in message, message
    failed = outcome["after_failure"]
    assert failed["adapter"] and not failed["merged"] and not failed["report"] and failed["hidden"] == []
    assert outcome["finished"], outcome["resumed_message"]
    assert outcome["after_resume"]["merged"] and outcome["resumed_from"] == "checkpoint-8"
    assert outcome["resumed_steps"] == 8 and outcome["after_resume"]["checkpoints"] == failed["checkpoints"]
