"""GGUF export through llama.cpp's own converter, for llama.cpp, Ollama, LM Studio and the like.

GGUF conversion is llama.cpp's to define (tensor names, tokenizer metadata, new architectures arrive there first),
so this module does not convert anything itself: it finds the user's ``convert_hf_to_gguf.py`` (the
``gguf.gguf_converter`` setting, a llama.cpp folder, or the script on PATH), runs it on a model folder with the
quantization type of ``gguf.gguf_type``, and for the k-quants (q4_k_m and the like, which the converter cannot
write) quantizes its f16 output with ``llama-quantize``. The converter runs under this Python (it needs torch,
numpy and the tokenizer libraries, which this environment has), with its output passed through to the log.

The file is written under a hidden partial name next to the output and renamed only when complete, so a failed or
interrupted conversion never leaves a file that looks like a model; the f16 intermediate of a k-quant is removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from heretic_tui.core.atomic_files import storage_errors
from heretic_tui.core.errors import HereticError, UserInputError
from heretic_tui.core.settings import GgufSettings

CONVERTER_NAMES = ("convert_hf_to_gguf.py", "convert-hf-to-gguf.py")
QUANTIZE_NAMES = ("llama-quantize", "quantize")
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
"""Types convert_hf_to_gguf.py writes itself (--outtype)."""
QUANTIZE_TYPES = {"q2_k": "Q2_K", "q3_k_m": "Q3_K_M", "q4_0": "Q4_0", "q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M",
                  "q6_k": "Q6_K"}
"""Types only llama-quantize writes, with the spelling it expects."""
TAIL_LINES = 12
HOW_TO_GET = (
    "Get llama.cpp (git clone https://github.com/ggml-org/llama.cpp), install the converter's requirements into "
    "this environment (pip install -r llama.cpp/requirements/requirements-convert_hf_to_gguf.txt), then set "
    "gguf.gguf_converter to the llama.cpp folder (or put convert_hf_to_gguf.py on PATH)."
)


def find_converter(settings: GgufSettings, which: Callable[[str], str | None] = shutil.which) -> Path:
    """The converter script the setting names (the script or its llama.cpp folder), else the one on PATH."""
    configured = settings.gguf_converter.strip()
    if configured:
        path = Path(configured).expanduser()
        candidates = [path / name for name in CONVERTER_NAMES] if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise UserInputError(
            f"gguf.gguf_converter is {configured!r}, but no converter is there (expected convert_hf_to_gguf.py, or "
            f"the llama.cpp folder that holds it). {HOW_TO_GET}"
        )
    for name in CONVERTER_NAMES:
        found = which(name)
        if found:
            return Path(found).resolve()
    raise UserInputError(f"GGUF export needs llama.cpp's converter (convert_hf_to_gguf.py), and none was found. "
                         f"{HOW_TO_GET}")


def find_quantize(settings: GgufSettings, converter: Path,
                  which: Callable[[str], str | None] = shutil.which) -> Path:
    """llama-quantize: the setting, else next to the converter (build/bin, the CMake default), else on PATH."""
    configured = settings.gguf_quantize.strip()
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
        raise UserInputError(f"gguf.gguf_quantize is {configured!r}, which is not an executable file. Give the path "
                             "of llama.cpp's llama-quantize (build/bin/llama-quantize after building llama.cpp).")
    for folder in (converter.parent / "build" / "bin", converter.parent):
        for name in QUANTIZE_NAMES:
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate.resolve()
    for name in QUANTIZE_NAMES:
        found = which(name)
        if found:
            return Path(found).resolve()
    raise UserInputError(
        f"gguf.gguf_type {settings.gguf_type} needs llama.cpp's llama-quantize, which was not found next to "
        f"{converter} or on PATH. Build llama.cpp (cmake -B build && cmake --build build --target llama-quantize) "
        "and set gguf.gguf_quantize to build/bin/llama-quantize, or choose a type the converter writes itself: "
        f"{', '.join(CONVERTER_TYPES)}."
    )


def default_output(model_folder: Path, gguf_type: str) -> Path:
    return model_folder / f"{model_folder.name}-{gguf_type}.gguf"


def check_request(model_folder: Path, output: Path) -> None:
    """A merged model folder in, a new file out; refused before anything runs (exit 2)."""
    if not (model_folder / "config.json").is_file():
        raise UserInputError(
            f"{model_folder} is not a model folder (it has no config.json). Give a merged model folder: an export "
            "of a trial (heretic-tui export RUN --trial N --output DIR) or a merged fine-tune; a LoRA adapter must "
            "be exported merged first."
        )
    if not any(model_folder.glob("*.safetensors")) and not any(model_folder.glob("*.bin")):
        raise UserInputError(f"{model_folder} has a config.json but no weights (*.safetensors); export the model "
                             "again.")
    if output.exists():
        raise UserInputError(f"The GGUF file {output} already exists. Remove it or give another --output.")
    if output.suffix.lower() != ".gguf":
        raise UserInputError(f"The output {output} should end in .gguf (llama.cpp and Ollama look for that name).")
    if not output.parent.is_dir():
        raise UserInputError(f"The folder {output.parent} of the output does not exist; create it first.")


def export_gguf(model_folder: str | Path, output: str | Path | None, settings: GgufSettings,
                log: Callable[[str], None] = print, which: Callable[[str], str | None] = shutil.which) -> Path:
    """Convert a model folder to one GGUF file of ``settings.gguf_type``; returns the file's path."""
    folder = Path(model_folder).expanduser().resolve()
    target = Path(output).expanduser().absolute() if output else default_output(folder, settings.gguf_type)
    check_request(folder, target)
    converter = find_converter(settings, which)
    quantize = find_quantize(settings, converter, which) if settings.gguf_type in QUANTIZE_TYPES else None
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    intermediate = target.with_name(f".{target.name}.f16-{os.getpid()}")
    try:
        if quantize is None:
            _run([sys.executable, str(converter), str(folder), "--outfile", str(partial), "--outtype",
                  settings.gguf_type], "convert_hf_to_gguf.py", log)
        else:
            _run([sys.executable, str(converter), str(folder), "--outfile", str(intermediate), "--outtype", "f16"],
                 "convert_hf_to_gguf.py", log)
            _run([str(quantize), str(intermediate), str(partial), QUANTIZE_TYPES[settings.gguf_type]],
                 "llama-quantize", log)
        if not partial.is_file() or partial.stat().st_size == 0:
            raise HereticError(f"llama.cpp's tools ended without an error but wrote no GGUF file ({partial}); "
                               "their output above says why.")
        with storage_errors(target, "move the finished GGUF file into place"):
            os.replace(partial, target)
    finally:
        for leftover in (partial, intermediate):
            leftover.unlink(missing_ok=True)
    log(f"wrote {target} ({settings.gguf_type}, {target.stat().st_size / 1024**3:.2f} GB)")
    return target


def _run(command: list[str], name: str, log: Callable[[str], None]) -> None:
    """Run one llama.cpp tool, passing its output on line by line; a failure keeps the last lines as the reason."""
    log(f"running {name}: {' '.join(command[1:] if command[0] == sys.executable else command)}")
    tail: list[str] = []
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace")
    except OSError as error:
        raise UserInputError(f"{name} ({command[0]}) cannot be started: {error.strerror or error}. {HOW_TO_GET}") \
            from None
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        log(f"  {line}")
        tail = (tail + [line])[-TAIL_LINES:]
    code = process.wait()
    if code != 0:
        raise HereticError(f"{name} failed with exit code {code}. Its last lines:\n" + "\n".join(tail))
