"""A full disk or read-only folder is a StorageError whichever library hit it (Python's OSError or Rust's text)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from heretic_tui.core.atomic_files import storage_errno, storage_errors
from heretic_tui.core.errors import EXIT_STORAGE, StorageError


class SafetensorLikeError(Exception):
    """What safetensors (Rust) raises: its own type, the OS error only in the text."""


@pytest.mark.parametrize(
    ("error", "number"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
        (SafetensorLikeError("Error while serializing: I/O error: No space left on device (os error 28)"), 28),
        (SafetensorLikeError('I/O error: Read-only file system (os error 30) at path "/x/.tmp"'), 30),
        (SafetensorLikeError("I/O error: No such file or directory (os error 2)"), None),
        (OSError(errno.ENOENT, "No such file"), None),
        (ValueError("shape mismatch"), None),
    ],
)
def test_storage_errno(error: BaseException, number: int | None) -> None:
    assert storage_errno(error) == number


def test_a_rust_writers_full_disk_becomes_one_paragraph(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        with storage_errors(tmp_path / "model", "write the export"):
            raise SafetensorLikeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert caught.value.exit_code == EXIT_STORAGE
    assert "the disk is full" in str(caught.value) and str(tmp_path / "model") in str(caught.value)
    with pytest.raises(SafetensorLikeError):
        with storage_errors(tmp_path, "write"):
            raise SafetensorLikeError("I/O error: No such file or directory (os error 2)")
