"""Files and folders that appear whole or not at all, and the cleaning of what a killed writer left behind.

Every writer of a file a reader trusts (job.json, worker.json, state.json, report.json, config files, model cards)
and of a folder a user ships (exports, merges) goes through here, so "a half-written output that looks complete"
has one place to be prevented. A temporary name carries the writer's pid (``.name.tmp-PID`` for files,
``.name.partial-PID`` for folders); a temporary whose writer is gone is a leftover of a kill or a full disk, and
:func:`remove_leftovers` deletes it before the next write into the same place, so a stuck temporary never makes a
run folder unusable. Errors of the storage itself (no space, read-only, no permission) become one
:class:`StorageError` paragraph naming the path.

Hand-written rather than a library: the standard library has the primitives (``os.replace``, ``os.fsync``) but
nothing that cleans the leftovers of dead writers, which is the part that matters after a power loss.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psutil

from heretic_tui.core.errors import StorageError

STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:tmp|partial)-(?P<pid>\d+)$")
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")

T = TypeVar("T")


def describe_storage_error(error: OSError, path: Path | str, action: str) -> str:
    """One paragraph for a failed write: what failed, where, and what to do about it."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EFBIG: "the file is larger than this file system allows",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission was denied",
        errno.EPERM: "the operation is not permitted",
    }
    reason = reasons.get(error.errno or 0, error.strerror or str(error))
    return (
        f"Could not {action} {path}: {reason}. Nothing was left half-written there. Free some space (or fix the "
        "folder's permissions, or choose another folder) and run the same command again; a run continues with "
        "--resume where it stopped."
    )


def storage_errno(error: BaseException) -> int | None:
    """The errno of a full disk, a read-only folder or a permission error behind ``error``, else None.

    Writers in Rust (safetensors, tokenizers) raise their own exception types with the OS error only in the text
    ("... No space left on device (os error 28)"), so the text is read too.
    """
    if isinstance(error, OSError):
        return error.errno if error.errno in STORAGE_ERRNOS else None
    match = _RUST_OS_ERROR.search(str(error))
    if match is not None and int(match.group(1)) in STORAGE_ERRNOS:
        return int(match.group(1))
    return None


def is_storage_error(error: BaseException) -> bool:
    return storage_errno(error) is not None


@contextmanager
def storage_errors(path: Path | str, action: str) -> Iterator[None]:
    """Turn a full disk, a read-only folder or a permission error into a :class:`StorageError` paragraph."""
    try:
        yield
    except Exception as error:
        number = storage_errno(error)
        if number is None:
            raise
        described = error if isinstance(error, OSError) else OSError(number, os.strerror(number))
        raise StorageError(describe_storage_error(described, path, action)) from error


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def remove_leftovers(folder: Path, name: str | None = None) -> list[Path]:
    """Delete temporaries of dead writers in ``folder`` (only those of ``name`` when given); returns what went."""
    removed: list[Path] = []
    try:
        children = list(folder.iterdir())
    except OSError:
        return removed
    for child in children:
        match = _LEFTOVER.match(child.name)
        if match is None or (name is not None and match.group("name") != name):
            continue
        if _writer_alive(int(match.group("pid"))):
            continue
        try:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        except OSError:
            continue
        removed.append(child)
    return removed


def _temporary_name(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}")


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename, so a reader never sees half a file."""
    path = Path(path)
    temporary = _temporary_name(path, "tmp")
    with storage_errors(path, "write"):
        remove_leftovers(path.parent, path.name)
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


def write_text_atomically(path: Path, text: str) -> None:
    write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: Path, data: Any) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file that may be missing, half-written or not an object: then an empty dict."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_folder_atomically(output: Path, write: Callable[[Path], T], *, replace: bool = True) -> T:
    """Call ``write(folder)`` on a hidden ``.name.partial-PID`` sibling, then rename it to ``output``.

    A leftover partial folder of a dead writer (an export killed at its rename, a full disk) is deleted first, so
    the size of a model is never left hidden next to the output. ``replace`` allows an existing ``output`` to be
    replaced (it is removed only once the new folder is complete).
    """
    output = Path(output).expanduser().resolve()
    with storage_errors(output, "write the folder"):
        output.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(output.parent, output.name)
        temporary = _temporary_name(output, "partial")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        try:
            result = write(temporary)
            if output.exists():
                if not replace and (output.is_file() or any(output.iterdir())):
                    raise FileExistsError(errno.EEXIST, "exists", str(output))
                if output.is_dir() and not output.is_symlink():
                    shutil.rmtree(output)
                else:
                    output.unlink()
            os.replace(temporary, output)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return result
