"""GGUF export drives llama.cpp's tools with the right arguments; fakes stand in for them and check what they get."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from heretic_tui.core.errors import HereticError, UserInputError
from heretic_tui.core.settings import GgufSettings
from heretic_tui.core.shipping.gguf import export_gguf, find_converter

FAKE_CONVERTER = r'''
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--outfile", required=True)
parser.add_argument("--outtype", required=True, choices=["f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0", "auto"])
arguments = parser.parse_args()
assert os.path.isfile(os.path.join(arguments.model, "config.json")), "the model folder has no config.json"
if os.environ.get("FAKE_CONVERTER_FAILS"):
    print("INFO: loading model part 1"); print("ERROR: Model MysteryForCausalLM is not supported"); sys.exit(1)
print(f"INFO: converting {arguments.model} to {arguments.outtype}")
with open(arguments.outfile, "wb") as handle:
    handle.write(b"GGUF" + json.dumps({"type": arguments.outtype, "python": sys.executable}).encode())
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(json.dumps(["convert"] + sys.argv[1:]) + "\n")
'''

FAKE_QUANTIZE = r'''#!{python}
import json, os, sys
source, target, kind = sys.argv[1:4]
assert open(source, "rb").read(4) == b"GGUF", "the input is not a GGUF file"
assert kind in ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"), kind
with open(target, "wb") as handle:
    handle.write(b"GGUF" + json.dumps({{"type": kind}}).encode())
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(json.dumps(["quantize"] + sys.argv[1:]) + "\n")
'''


@pytest.fixture
def llama_cpp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A llama.cpp folder with a fake converter and a fake build/bin/llama-quantize."""
    folder = tmp_path / "llama.cpp"
    (folder / "build" / "bin").mkdir(parents=True)
    (folder / "convert_hf_to_gguf.py").write_text(FAKE_CONVERTER)
    quantize = folder / "build" / "bin" / "llama-quantize"
    quantize.write_text(FAKE_QUANTIZE.format(python=sys.executable))
    quantize.chmod(quantize.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))
    return folder


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return folder


def calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_a_type_the_converter_writes_is_one_converter_run(llama_cpp: Path, model_folder: Path, tmp_path: Path) -> None:
    path = export_gguf(model_folder, None, GgufSettings(gguf_converter=str(llama_cpp), gguf_type="q8_0"),
                       log=lambda line: None)
    assert path == model_folder / "my-model-q8_0.gguf"
    content = json.loads(path.read_bytes()[4:])
    assert content == {"type": "q8_0", "python": sys.executable}
    (call,) = calls(tmp_path)
    assert call[:2] == ["convert", str(model_folder)] and call[call.index("--outtype") + 1] == "q8_0"
    assert not [item for item in model_folder.iterdir() if item.name.startswith(".")]


def test_a_k_quant_is_converted_to_f16_then_quantized(llama_cpp: Path, model_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.gguf"
    lines: list[str] = []
    path = export_gguf(model_folder, output, GgufSettings(gguf_converter=str(llama_cpp), gguf_type="q4_k_m"),
                       log=lines.append)
    assert path == output and json.loads(output.read_bytes()[4:]) == {"type": "Q4_K_M"}
    convert, quantize = calls(tmp_path)
    assert convert[convert.index("--outtype") + 1] == "f16"
    assert quantize[1] == convert[convert.index("--outfile") + 1] and quantize[3] == "Q4_K_M"
    assert not Path(quantize[1]).exists(), "the f16 intermediate is removed"
    assert any("converting" in line for line in lines), "the converter's output is passed on"


def test_a_failing_converter_leaves_no_file_and_says_why(llama_cpp: Path, model_folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CONVERTER_FAILS", "1")
    output = tmp_path / "out.gguf"
    with pytest.raises(HereticError, match="MysteryForCausalLM is not supported") as raised:
        export_gguf(model_folder, output, GgufSettings(gguf_converter=str(llama_cpp)), log=lambda line: None)
    assert "exit code 1" in str(raised.value)
    assert not output.exists() and not [item for item in tmp_path.iterdir() if item.name.startswith(".out")]


def test_no_converter_anywhere_says_how_to_get_one(model_folder: Path) -> None:
    with pytest.raises(UserInputError, match="git clone https://github.com/ggml-org/llama.cpp"):
        export_gguf(model_folder, None, GgufSettings(), which=lambda name: None)
    with pytest.raises(UserInputError, match="gguf.gguf_converter is '/nowhere'"):
        find_converter(GgufSettings(gguf_converter="/nowhere"))


def test_the_converter_on_path_is_found(llama_cpp: Path) -> None:
    script = llama_cpp / "convert_hf_to_gguf.py"
    assert find_converter(GgufSettings(), which=lambda name: str(script) if name == script.name else None) == script


def test_a_k_quant_without_llama_quantize_is_refused_before_converting(llama_cpp: Path, model_folder: Path,
                                                                       tmp_path: Path) -> None:
    os.remove(llama_cpp / "build" / "bin" / "llama-quantize")
    with pytest.raises(UserInputError, match="needs llama.cpp's llama-quantize"):
        export_gguf(model_folder, None, GgufSettings(gguf_converter=str(llama_cpp), gguf_type="q4_k_m"),
                    which=lambda name: None)
    assert not (tmp_path / "calls.jsonl").exists()


def test_bad_requests_are_refused_before_anything_runs(llama_cpp: Path, model_folder: Path, tmp_path: Path) -> None:
    settings = GgufSettings(gguf_converter=str(llama_cpp))
    with pytest.raises(UserInputError, match="no config.json"):
        export_gguf(tmp_path, None, settings)
    (tmp_path / "taken.gguf").write_bytes(b"x")
    with pytest.raises(UserInputError, match="already exists"):
        export_gguf(model_folder, tmp_path / "taken.gguf", settings)
    with pytest.raises(UserInputError, match="should end in .gguf"):
        export_gguf(model_folder, tmp_path / "model.bin", settings)


def test_the_command_prints_the_file(llama_cpp: Path, model_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from heretic_tui.cli.main import dispatch

    assert dispatch(["gguf", str(model_folder), "--type", "f16", "--set", f"gguf.gguf_converter={llama_cpp}"]) == 0
    assert capsys.readouterr().out.strip() == str(model_folder / "my-model-f16.gguf")
