"""heretic.json: the file in a model folder heretic-tui wrote that says where the model came from.

An abliteration export and a fine-tune (its adapter and its merged model) write it; the upload leaves it out (it
holds local paths), the model card is built from it, the registry links the folder to its source model, run and
trial through it, and the model browser shows it. One module writes and reads it, so its name, its encoding and
what a damaged copy means are decided once.

Its keys: ``method`` ("abliteration" or "finetune"), ``format`` ("merged" or "adapter"), ``source_model`` (as the
user named it), ``source_location``, ``run_dir``, ``trial`` (abliteration), ``parameters``, ``methods`` (abliteration: the
direction, ablation and component methods of the trial and the settings that shaped its directions), ``metrics``,
``created`` (ISO 8601, UTC), ``versions`` (library versions), and whatever else the writer adds.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from heretic_tui.core.atomic_files import read_json_object, write_json_atomically

METADATA_FILE = "heretic.json"
METHOD_ABLITERATION = "abliteration"
METHOD_FINE_TUNE = "finetune"
FORMAT_MERGED = "merged"
FORMAT_ADAPTER = "adapter"
NOT_INSTALLED = "not installed"
LIBRARIES = ("heretic-tui", "torch", "transformers", "peft", "optuna", "safetensors", "tokenizers")


def metadata_path(folder: Path) -> Path:
    return Path(folder) / METADATA_FILE


def has_metadata(folder: Path) -> bool:
    return metadata_path(folder).is_file()


def read_metadata(folder: Path) -> dict[str, Any]:
    """The folder's heretic.json, or an empty dict when it is missing, half-written or not a JSON object.

    Every reader treats such a folder as a model of unknown origin rather than failing: a model card is still
    written, the registry still lists the folder.
    """
    return read_json_object(metadata_path(folder))


def write_metadata(folder: Path, metadata: dict[str, Any]) -> Path:
    """Write heretic.json into ``folder`` whole or not at all (a full disk is a StorageError paragraph)."""
    path = metadata_path(folder)
    write_json_atomically(path, metadata)
    return path


def created_now() -> str:
    """The ``created`` value: now, ISO 8601 in UTC (what the registry and the browser parse)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the libraries that shaped the weights, for the card's reproduction section."""
    versions = {}
    for name in (*LIBRARIES, *extra):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions
