"""The merged export of a run searched on a quantized model: the trial applied to the full-precision checkpoint
shard by shard gives the weights an in-memory edit of the full-precision model gives, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from heretic_tui.core.abliteration.ablation import Abliterator, KernelParameters, TrialParameters
from heretic_tui.core.models.loading import load_model
from heretic_tui.core.settings import ModelSettings
from heretic_tui.core.shipping.streamed_export import checkpoint_shards, stream_trial_export

TRIAL = TrialParameters("per_layer", 0.0, {"attention": KernelParameters(1.3, 1.0, 0.5, 2.0),
                                           "mlp": KernelParameters(1.0, 2.0, 0.7, 1.5)},
                        ablation_method="norm_preserving")


@pytest.mark.parametrize("architecture", ["llama", "qwen3_moe"])
def test_a_streamed_export_equals_the_in_memory_edit(architecture: str, tiny_models: dict[str, Path],
                                                    tmp_path: Path) -> None:
    original = load_model(ModelSettings(model=str(tiny_models[architecture]), dtypes=["float32"]))
    source = tmp_path / "sharded"
    original.model.save_pretrained(str(source), max_shard_size="40KB")
    original.tokenizer.save_pretrained(str(source))
    shards = checkpoint_shards(source)
    assert len(shards) > 1
    config = original.model.config
    directions = torch.nn.functional.normalize(
        torch.randn(config.num_hidden_layers, config.hidden_size, generator=torch.Generator().manual_seed(4)), dim=-1)

    destination = tmp_path / "exported"
    destination.mkdir()
    seen: list[tuple[int, int]] = []
    edited = stream_trial_export(source, destination, TRIAL, directions, lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(shards), len(shards))

    abliterator = Abliterator(original.model, directions)
    abliterator.apply(TRIAL)
    expected = original.model.state_dict()
    assert len(edited) >= len(list(abliterator.weights(TRIAL)))
    with safe_open(str(checkpoint_shards(source)[0]), framework="pt") as opened:
        untouched = next(name for name in opened.keys() if name not in edited)
        for shard in checkpoint_shards(destination):
            with safe_open(str(shard), framework="pt") as written:
                if untouched in written.keys():
                    assert torch.equal(written.get_tensor(untouched), opened.get_tensor(untouched))
    reloaded = load_model(ModelSettings(model=str(destination), dtypes=["float32"]))
    for name, tensor in reloaded.model.state_dict().items():
        # A fused expert tensor is edited per expert from the checkpoint and as one einsum in memory: the same
        # arithmetic in another summation order, so equal to float32 rounding; every other tensor bit for bit.
        if tensor.dim() == 3:
            assert torch.allclose(tensor, expected[name], rtol=1e-5, atol=1e-7), name
        else:
            assert torch.equal(tensor, expected[name]), name


def test_the_streamed_export_of_a_run_writes_what_the_in_memory_export_writes(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """export_streamed_trial (what a run searched on a 4-bit model exports through) against export_loaded_trial on
    a run of the same model in full precision: the same weights, metadata and files."""
    import json

    from heretic_tui.core.abliteration.job import start_abliteration
    from heretic_tui.core.abliteration.study import completed_trials, read_study
    from heretic_tui.core.runs.run_directory import RunDirectory
    from heretic_tui.core.settings import Settings
    from heretic_tui.core.shipping.export import _directions, export_loaded_trial, export_streamed_trial

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"how do i make bread {index} ?" for index in range(8)) + "\n")
    settings = Settings()
    settings.model.model = str(tiny_models["llama"])
    settings.model.dtypes = ["float32"]
    for name in ("bad_prompts", "good_prompts", "bad_eval_prompts", "good_eval_prompts"):
        setattr(settings.prompts, name, str(prompts))
    settings.abliteration.refusal_max_tokens = 4
    settings.optimization.trials = 2
    handle = start_abliteration(settings, tmp_path / "run")
    assert handle.wait(timeout=600) == 0, handle.run.log_path.read_text(encoding="utf-8")
    run = RunDirectory(tmp_path / "run")
    study = read_study(run.path)
    trial = completed_trials(study)[0].number

    streamed = export_streamed_trial(None, run, study, trial, tmp_path / "streamed")
    loaded = load_model(ModelSettings(model=str(tiny_models["llama"]), dtypes=["float32"]))
    in_memory = export_loaded_trial(None, loaded, Abliterator(loaded.model, _directions(run)), study, trial,
                                    tmp_path / "in-memory", adapter=False, run=run)
    first = load_model(ModelSettings(model=str(streamed), dtypes=["float32"])).model.state_dict()
    second = load_model(ModelSettings(model=str(in_memory), dtypes=["float32"])).model.state_dict()
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    metadata = [json.loads((folder / "heretic.json").read_text()) for folder in (streamed, in_memory)]
    assert [item["trial"] for item in metadata] == [trial, trial]
    assert metadata[0]["parameters"] == metadata[1]["parameters"] and metadata[0]["format"] == metadata[1]["format"]
    assert (streamed / "tokenizer.json").is_file() and (streamed / "README.md").is_file()
