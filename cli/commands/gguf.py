"""``heretic-tui gguf``: a model folder as one GGUF file, through llama.cpp's own converter."""

from __future__ import annotations

import argparse

from heretic_tui.cli.arguments import add_settings_flags, settings_from_arguments
from heretic_tui.cli.following import progress_line
from heretic_tui.core.errors import EXIT_OK

NAME = "gguf"
HELP = "convert a model folder to GGUF with llama.cpp's converter (for llama.cpp, Ollama)"
DESCRIPTION = """\
Convert a merged model folder (an export of a trial, a merged fine-tune) into
one GGUF file with llama.cpp's convert_hf_to_gguf.py (gguf.gguf_converter, or
on PATH). f32, f16, bf16 and q8_0 come from the converter; the k-quants
(q4_k_m and the like) are made from its f16 output with llama-quantize. The
file appears only when complete; the GGUF path is printed on stdout."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_folder", metavar="MODEL_FOLDER", help="a merged model folder with config.json")
    parser.add_argument("--output", metavar="FILE",
                        help="the .gguf file to write (default: MODEL_FOLDER/NAME-TYPE.gguf)")
    parser.add_argument("--type", dest="gguf_type", metavar="TYPE",
                        help="quantization type (default: gguf.gguf_type, q8_0): f32, f16, bf16, q8_0, q2_k, "
                             "q3_k_m, q4_0, q4_k_m, q5_k_m, q6_k")
    add_settings_flags(parser)


def run(arguments: argparse.Namespace) -> int:
    from heretic_tui.core.shipping.gguf import export_gguf

    extra = {"gguf.gguf_type": arguments.gguf_type} if arguments.gguf_type else None
    settings = settings_from_arguments(arguments, extra=extra)
    path = export_gguf(arguments.model_folder, arguments.output, settings.gguf, log=progress_line)
    print(path)
    return EXIT_OK
