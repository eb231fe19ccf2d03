"""Model folders and a Hugging Face cache built by the tests: tiny config.json and safetensors files, no weights
worth loading, exactly the metadata the model browser reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"
MODIFIED = 1_789_990_000.0
"""Every file gets this modification time, so the browser's dates are the same on every run."""


def write_model_files(folder: Path, *, architecture: str, template: bool, dtype: type = np.float16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": "llama",
                                                    "torch_dtype": "bfloat16"}))
    tokenizer_config = {"chat_template": "{{ messages }}"} if template else {}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    save_file({"embed.weight": np.zeros((100, 16), dtype=dtype), "head.weight": np.zeros((16, 100), dtype=dtype),
               "norm.weight": np.zeros((16,), dtype=np.float32)}, str(folder / "model.safetensors"))
    for file in folder.iterdir():
        os.utime(file, (MODIFIED, MODIFIED))


def build_hub_cache(cache: Path, repository: str) -> Path:
    """The cache layout huggingface_hub writes: blobs, a ref, and a snapshot of symlinks to the blobs."""
    repo_folder = cache / f"models--{repository.replace('/', '--')}"
    staging = repo_folder / "staging"
    write_model_files(staging, architecture="LlamaForCausalLM", template=True)
    snapshot = repo_folder / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    (repo_folder / "blobs").mkdir()
    for file in sorted(staging.iterdir()):
        blob = repo_folder / "blobs" / f"blob-{file.name}"
        file.rename(blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    staging.rmdir()
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(SNAPSHOT)
    return snapshot
