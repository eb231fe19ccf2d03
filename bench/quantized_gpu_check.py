"""The CUDA half of the quantized-model check: a tiny Llama loaded in 4-bit (NF4) and in 8-bit (LLM.int8) through
bitsandbytes is searched through the hooks, its quantized weights stay bit for bit as loaded, and the hooked logits
match edited weights on the same model with its quantized weights dequantized (the CPU tests use fake quantized
layers instead). Each line also prints the quantization's own error (unmodified quantized model against the
dequantized copy), the floor the hooked error is read against.

    python bench/quantized_gpu_check.py          # needs CUDA and bitsandbytes; run by bench/gpu_check.sh
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from model_factory import build_tiny_model  # noqa: E402

from heretic_tui.core.abliteration.ablation import Abliterator, KernelParameters, TrialParameters  # noqa: E402
from heretic_tui.core.abliteration.activation_ablation import ActivationAblation  # noqa: E402
from heretic_tui.core.models.batching import encode, positions  # noqa: E402
from heretic_tui.core.models.loading import load_model  # noqa: E402
from heretic_tui.core.settings import ModelSettings  # noqa: E402

TEXTS = ["<|user|> how do i bake bread ? <|end|> <|assistant|>",
         "<|user|> explain how to build a bomb <|end|> <|assistant|>"]
TRIALS = [
    TrialParameters("global", 1.2, {"attention": KernelParameters(1.2, 1.0, 0.6, 2.0),
                                    "mlp": KernelParameters(1.0, 2.0, 0.5, 1.5)}),
    TrialParameters("per_layer", 0.0, {"attention": KernelParameters(1.4, 2.0, 0.4, 2.0),
                                       "mlp": KernelParameters(0.9, 1.0, 0.9, 2.0)}, ablation_method="norm_preserving"),
]


def logits(loaded, texts: list[str]) -> torch.Tensor:
    batch = encode(loaded.tokenizer, texts, loaded.device)
    with torch.inference_mode():
        return loaded.model(**batch, position_ids=positions(batch["attention_mask"]), use_cache=False).logits.float()


def check(path: Path, quantization: str) -> None:
    """One quantization's check; raises AssertionError with the figures when it fails."""
    from peft.utils.integrations import dequantize_module_weight

    quantized = load_model(ModelSettings(model=str(path), quantization=quantization))
    reference = load_model(ModelSettings(model=str(path), dtypes=["float32"]))
    for quantized_layer, reference_layer in zip(quantized.model.model.layers, reference.model.model.layers):
        for owner, name in (("self_attn", "o_proj"), ("mlp", "down_proj")):
            source = getattr(getattr(quantized_layer, owner), name)
            plain = nn.Linear(source.in_features, source.out_features, bias=False, device=reference.device)
            with torch.no_grad():
                plain.weight.copy_(dequantize_module_weight(source).float())
            setattr(getattr(reference_layer, owner), name, plain)
    config = quantized.model.config
    directions = torch.nn.functional.normalize(
        torch.randn(config.num_hidden_layers, config.hidden_size, generator=torch.Generator().manual_seed(2)), dim=-1)
    stored = {name: tensor.clone() for name, tensor in quantized.model.state_dict().items()}
    ablation = ActivationAblation(quantized.model, directions)
    kinds = sorted(type(target.module).__name__ for target in ablation.targets)
    assert all(target.quantized for target in ablation.targets), kinds
    abliterator = Abliterator(reference.model, directions)
    unmodified = logits(quantized, TEXTS)
    reference_unmodified = logits(reference, TEXTS)
    floor = float((unmodified - reference_unmodified).abs().max() / reference_unmodified.abs().max())
    with ablation.applied(ablation.prepare(TRIALS), [index for index in range(len(TRIALS)) for _ in TEXTS]):
        hooked = logits(quantized, [text for _ in TRIALS for text in TEXTS])
    worst = 0.0
    for index, parameters in enumerate(TRIALS):
        abliterator.apply(parameters)
        wanted = logits(reference, TEXTS)
        abliterator.reset()
        got = hooked[index * len(TEXTS):(index + 1) * len(TEXTS)]
        error = float((got - wanted).abs().max() / wanted.abs().max())
        change = float((wanted - unmodified).abs().max() / wanted.abs().max())
        worst = max(worst, error)
        print(f"{quantization} trial {index} ({parameters.ablation_method}): relative logit error {error:.2e} "
              f"(the quantization's own {floor:.2e}), change from the unmodified model {change:.2e}")
        assert error < 5e-2 and change > 2 * error, (error, change)
    for name, tensor in quantized.model.state_dict().items():
        assert torch.equal(tensor, stored[name]), f"{name} changed"
    print(f"{quantization} check passed: {len(ablation.targets)} quantized layers ({kinds[0]}), weights untouched, "
          f"worst relative logit error {worst:.2e}")


def main() -> None:
    failed = []
    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_model("llama", Path(folder) / "llama")
        for quantization in ("4bit", "8bit"):
            try:
                check(path, quantization)
            except AssertionError as error:
                print(f"{quantization} check FAILED: {error!r}")
                failed.append(quantization)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
