"""The plan before a download: figures from metadata only, the fit verdict, and the offers when it does not fit."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.operations import plan as planning
from heretic_tui.core.operations.plan import (
    GIGABYTE,
    facts_from_metadata,
    make_plan,
    parse_gpu,
    plan_for,
    plan_lines,
    read_model_facts,
)
from heretic_tui.core.settings import Settings

LLAMA_70B = {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
             "intermediate_size": 28672, "vocab_size": 128256, "torch_dtype": "bfloat16",
             "tie_word_embeddings": False, "max_position_embeddings": 131072}
LLAMA_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "intermediate_size": 14336, "vocab_size": 128256, "torch_dtype": "bfloat16",
            "tie_word_embeddings": False}


def test_the_demo_model_is_counted_from_its_safetensors_headers() -> None:
    from safetensors.numpy import load_file

    from heretic_tui.core.models.demo import ensure_demo_model

    folder = ensure_demo_model()
    tensors = {name: array for path in folder.glob("*.safetensors") for name, array in load_file(path).items()}
    facts = read_model_facts("demo", Settings())
    assert facts.counted_from == "safetensors" and facts.source == "demo"
    assert facts.parameters == sum(array.size for array in tensors.values())
    assert facts.checkpoint_bytes == sum(array.nbytes for array in tensors.values())
    config = json.loads((folder / "config.json").read_text())
    assert facts.layers == config["num_hidden_layers"] and facts.hidden_size == config["hidden_size"]


def test_a_folder_without_safetensors_is_estimated_from_its_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    facts = read_model_facts(str(tmp_path), Settings())
    assert facts.counted_from == "config"
    assert 7.5e9 < facts.parameters < 8.5e9
    assert "estimated from the config" in plan_lines(make_plan(facts, Settings(), parse_gpu("80GB")))[0]


def test_a_hub_id_is_planned_from_its_config_and_safetensors_headers_only(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_70B))
    asked: list[tuple[str, str]] = []

    def download(repo: str, filename: str, **options: object) -> str:
        asked.append((repo, filename))
        return str(config)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata",
                        lambda repo, **options: SimpleNamespace(parameter_count={"BF16": 70_553_706_496}))
    facts = read_model_facts("meta-llama/Llama-3.1-70B-Instruct", Settings())
    assert asked == [("meta-llama/Llama-3.1-70B-Instruct", "config.json")]
    assert facts.parameters == 70_553_706_496 and facts.checkpoint_bytes == 2 * 70_553_706_496
    assert facts.source == "hub" and facts.counted_from == "safetensors"


def test_a_70b_model_does_not_fit_one_24_gb_gpu_and_the_offers_say_what_would() -> None:
    facts = facts_from_metadata("llama-70b", "hub", LLAMA_70B, {"BF16": 70_553_706_496})
    settings = Settings()
    small = make_plan(facts, settings, parse_gpu("24 GB"), named=True, host_available=512 * GIGABYTE)
    assert not small.fits and small.verdict.startswith("does not fit")
    assert small.weights == 2 * facts.parameters
    titles = {offer.title.split(" ")[0]: offer for offer in small.offers}
    assert not titles["Load"].fits and titles["CPU"].fits
    large = make_plan(facts, settings, parse_gpu("80GB"), named=True, host_available=512 * GIGABYTE)
    four_bit = next(offer for offer in large.offers if offer.settings == {"model.quantization": "4bit"})
    assert four_bit.fits and four_bit.gpu_bytes < 80 * GIGABYTE < large.gpu_bytes
    settings.model.quantization = "4bit"
    assert make_plan(facts, settings, parse_gpu("80GB"), named=True).fits
    assert make_plan(facts, Settings(), parse_gpu("2x80GB"), named=True, host_available=512 * GIGABYTE).fits


def test_a_smaller_batch_is_offered_when_only_the_batch_is_too_big() -> None:
    facts = facts_from_metadata("llama-8b", "hub", LLAMA_8B, {"BF16": 8_030_261_248})
    settings = Settings()
    settings.model.max_batch_size = 256
    plan = make_plan(facts, settings, parse_gpu("20GB"), named=True, host_available=64 * GIGABYTE)
    assert not plan.fits
    batch = next(offer for offer in plan.offers if "model.batch_size" in offer.settings)
    settings.model.batch_size = settings.model.max_batch_size = batch.settings["model.batch_size"]
    assert batch.fits and make_plan(facts, settings, parse_gpu("20GB"), named=True, host_available=64 * GIGABYTE).fits
    settings.model.batch_size = settings.model.max_batch_size = batch.settings["model.batch_size"] * 2
    assert not make_plan(facts, settings, parse_gpu("20GB"), named=True, host_available=64 * GIGABYTE).fits


def test_the_kv_cache_grows_with_the_response_length_and_the_time_with_the_trials() -> None:
    facts = facts_from_metadata("llama-8b", "hub", LLAMA_8B, None)
    settings = Settings()
    short = make_plan(facts, settings, parse_gpu("80GB"))
    settings.abliteration.refusal_max_tokens *= 4
    settings.optimization.trials *= 2
    long = make_plan(facts, settings, parse_gpu("80GB"))
    assert long.kv_cache > short.kv_cache and long.seconds_per_trial > short.seconds_per_trial
    assert long.study_seconds == pytest.approx(long.seconds_per_trial * settings.optimization.trials)


@pytest.mark.parametrize(("text", "count", "size"), [("24 GB", 1, 24), ("80GiB", 1, 80), ("2x80GB", 2, 80),
                                                     ("12", 1, 12)])
def test_gpu_sizes(text: str, count: int, size: int) -> None:
    gpus = parse_gpu(text)
    assert len(gpus) == count and all(gpu.total == size * GIGABYTE for gpu in gpus)


def test_a_bad_gpu_size_names_the_flag() -> None:
    with pytest.raises(UserInputError, match="--gpu 'big'"):
        parse_gpu("big")


def test_fine_tuning_is_planned_with_the_finetune_memory_estimate() -> None:
    plan = plan_for("demo", Settings(), "8GB", kind=planning.KIND_FINETUNE)
    assert plan.finetune is not None
    assert 0 < plan.finetune["trainable_parameters"] < plan.model.parameters
    assert plan.finetune["total"] > plan.finetune["weights"] > 0
    assert any(line.startswith("fine-tune    fits") for line in plan_lines(plan))


def test_the_command_exits_1_when_it_does_not_fit_and_0_when_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    from heretic_tui.cli.main import dispatch

    assert dispatch(["plan", "--model", "demo", "--gpu", "0.01GB"]) == 1
    printed = capsys.readouterr().out
    assert "verdict      does not fit" in printed and "offer        Load the weights in 4 bit" in printed
    assert dispatch(["plan", "--model", "demo", "--gpu", "24GB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fits"] is True
    with pytest.raises(UserInputError, match="--gpu 'huge'"):
        dispatch(["plan", "--model", "demo", "--gpu", "huge"])


def test_8bit_loading_weighs_about_a_byte_per_decoder_parameter_and_is_offered() -> None:
    facts = facts_from_metadata("llama-70b", "hub", LLAMA_70B, {"BF16": 70_553_706_496})
    plan = make_plan(facts, Settings(), parse_gpu("80GB"), named=True, host_available=512 * GIGABYTE)
    offered = {offer.settings["model.quantization"]: offer for offer in plan.offers
               if "model.quantization" in offer.settings}
    assert offered["4bit"].gpu_bytes < offered["8bit"].gpu_bytes < plan.gpu_bytes
    assert not offered["8bit"].fits and offered["4bit"].fits, "70B in 8 bit needs more than one 80 GB GPU"
    settings = Settings()
    settings.model.quantization = "8bit"
    eight = make_plan(facts, settings, parse_gpu("2x80GB"), named=True, host_available=512 * GIGABYTE)
    decoder = facts.parameters - facts.embedding_parameters
    assert decoder <= eight.weights <= 1.02 * decoder + 2 * facts.embedding_parameters
    assert eight.fits and any(line.startswith("loads as") and ", 8-bit" in line for line in plan_lines(eight))
