"""A fine-tune's adapter and merged folders are written like exports: whole, or not at all, leftovers cleaned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from heretic_tui.core.errors import StorageError
from heretic_tui.core.finetuning.merge import save_adapter
from heretic_tui.core.settings import ModelSettings
from heretic_tui.core.shipping.metadata import METHOD_FINE_TUNE, read_metadata


class RustLikeDiskFull(Exception):
    """safetensors' own exception type, with the OS error only in its text."""


class Adapter:
    """Stands in for a PEFT model: writes part of its weights, then (optionally) meets a full disk."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def save_pretrained(self, folder: str) -> None:
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"\0" * 1024)
        if self.fail:
            raise RustLikeDiskFull("Error while serializing: I/O error: No space left on device (os error 28)")
        (Path(folder) / "adapter_config.json").write_text("{}", encoding="utf-8")


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_full_disk_leaves_nothing_and_the_next_save_cleans_a_dead_writers_leftover(
    tiny_models: dict[str, Path], tmp_path: Path,
) -> None:
    base = str(tiny_models["llama"])
    output = tmp_path / "out" / "adapter"
    leftover = output.with_name(f".adapter.partial-{dead_pid()}")
    leftover.mkdir(parents=True)
    (leftover / "adapter_model.safetensors").write_bytes(b"\0" * 4096)

    with pytest.raises(StorageError) as caught:
        save_adapter(Adapter(fail=True), base, ModelSettings(model=base), output, {"run_dir": str(tmp_path)})
    assert caught.value.exit_code == 3 and "the disk is full" in str(caught.value)
    assert list(output.parent.iterdir()) == [], "neither a half-written adapter nor the dead writer's leftover"

    written = save_adapter(Adapter(fail=False), base, ModelSettings(model=base), output, {"run_dir": str(tmp_path)})
    assert written == output.resolve()
    assert sorted(path.name for path in output.parent.iterdir()) == ["adapter"]
    metadata = read_metadata(output)
    assert (metadata["method"], metadata["format"], metadata["source_model"]) == (METHOD_FINE_TUNE, "adapter", base)
    assert "T" in metadata["created"] and "trl" in metadata["versions"]
    assert json.loads((output / "heretic.json").read_text(encoding="utf-8")) == metadata
