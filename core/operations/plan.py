"""The plan before any download: what a model weighs, what a run of it needs, whether that fits, how long it takes.

It reads only metadata: the config and the safetensors headers (the tensor names, shapes and dtypes at the start of
each file; for a hub id through :func:`huggingface_hub.get_safetensors_metadata`, which fetches those headers and
nothing else), so a 70B model is planned in a second on a laptop. From them it works out, for an abliteration:

- weights: parameters x bytes of the load dtype (model.dtypes, 'auto' being the checkpoint's own), or about half a
  byte per parameter of the decoder layers with 4-bit loading (about one with 8-bit);
- the reset cache: a copy of every matrix a trial edits (attention output and MLP down projections, every expert's),
  kept in host memory (pinned when the model is on a GPU) so a trial resets without reloading;
- activations of one evaluation batch: the hidden states and MLP intermediates of one layer for batch x prompt
  tokens (inference frees each layer's before the next), plus the last position's logits in float32;
- the KV cache for the response length: batch x (prompt + refusal_max_tokens + thinking budget) x layers x
  2 x key-value heads x head size.

It fits when the GPU memory (what is free on each GPU present, or the GPU the user names: "24 GB", "2x80GB") holds
weights, activations and KV cache with a margin, and host memory holds the reset cache. When it does not fit, the
plan lists what would: 8-bit or 4-bit loading, a smaller batch, CPU offload, each with the setting to change and
whether it then fits. The time per trial comes from a rough table of memory bandwidth (generation reads every weight
once per token) until a run measures it: the abliteration job times its own trials (:mod:`.trial_time`, a
``study_estimate`` event after each), and ``heretic-tui plan --calibrate`` times one evaluation of a local model.

The estimate is from first principles and good to tens of percent; it is there so "needs 150 GB" is seen before
the download, not to replace measuring. For fine-tuning the same metadata feeds
:func:`heretic_tui.core.finetuning.plan.estimate_memory` on a weightless copy of the model (meta device).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.operations.trial_time import approximate_duration
from heretic_tui.core.settings import Settings

GIGABYTE = 1024**3
PROMPT_TOKENS = 128
"""Tokens of a typical rendered evaluation prompt (system prompt, request, template markers): the planning length."""
CUDA_CONTEXT_BYTES = int(0.6 * GIGABYTE)
"""What the CUDA context and the allocator's fragmentation take on each GPU before any tensor."""
USABLE_SHARE = 0.92
"""Share of the remaining GPU memory the plan lets a run use (the rest is margin for spikes)."""
FOUR_BIT_BYTES = 0.53
"""bitsandbytes NF4 per parameter: half a byte plus the block constants (double quantization)."""
EIGHT_BIT_BYTES = 1.01
"""bitsandbytes LLM.int8 per parameter: one byte plus a float scale per row."""
QUANTIZED_BYTES = {"4bit": FOUR_BIT_BYTES, "8bit": EIGHT_BIT_BYTES}
"""Bytes per decoder parameter for each model.quantization that loads through bitsandbytes."""
INTERMEDIATE_VALUES = 6
"""Values per hidden unit alive at the peak of one layer's forward pass (residual, norm, attention, MLP parts)."""
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                     "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
BANDWIDTH_GPU = 1.5e12
"""Bytes per second a current data-centre or high-end GPU reads its memory at (rough table: H100 3e12, 4090 1e12)."""
BANDWIDTH_CPU = 4e10
"""Bytes per second of a server CPU's memory for one process (rough table)."""
GPU_PATTERN = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?(\d+(?:\.\d+)?)\s*(gb|gib|g)?\s*$", re.IGNORECASE)

KIND_ABLITERATE = "abliterate"
KIND_FINETUNE = "finetune"


@dataclass(frozen=True)
class ModelFacts:
    """What the metadata says about a model: its size, shape and the dtype its weights are stored in."""

    name: str
    source: str
    """'hub', 'folder' or 'demo'."""
    parameters: int
    checkpoint_dtype: str
    checkpoint_bytes: int
    layers: int
    hidden_size: int
    intermediate_size: int
    vocabulary_size: int
    key_value_heads: int
    head_size: int
    experts: int
    context_length: int | None
    tied_embeddings: bool
    counted_from: str
    """'safetensors' (exact) or 'config' (estimated: no safetensors files)."""

    @property
    def embedding_parameters(self) -> int:
        return self.vocabulary_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def edited_parameters(self) -> int:
        """Parameters of the matrices a trial edits: each layer's attention output and (every expert's) down
        projection."""
        attention = self.hidden_size * self.hidden_size
        mlp = self.hidden_size * self.intermediate_size * max(1, self.experts)
        return self.layers * (attention + mlp)


@dataclass(frozen=True)
class Gpu:
    name: str
    free: int
    total: int


@dataclass(frozen=True)
class Offer:
    """A change that makes the run fit, as the setting to change and what the plan then says."""

    title: str
    settings: dict[str, Any]
    fits: bool
    gpu_bytes: int
    note: str = ""


@dataclass
class Plan:
    kind: str
    model: ModelFacts
    load_dtype: str
    quantization: str
    batch_size: int
    batch_note: str
    weights: int
    reset_cache: int
    activations: int
    kv_cache: int
    gpu_bytes: int
    """Weights + activations + KV cache on the GPU(s) (or in host memory on a CPU-only machine)."""
    host_bytes: int
    """Host memory the run needs besides the process: the reset cache (and the weights without a GPU)."""
    gpus: list[Gpu]
    gpu_source: str
    """'present' (measured), 'named' (the user's --gpu), or 'none' (CPU only)."""
    host_available: int | None
    fits: bool
    verdict: str
    seconds_per_trial: float
    trials: int
    timing_source: str = "rough table (memory bandwidth)"
    response_tokens: int = 0
    capacity: int = 0
    """GPU memory the run may use (or host memory without a GPU)."""
    offers: list[Offer] = field(default_factory=list)
    finetune: dict[str, Any] | None = None

    @property
    def study_seconds(self) -> float:
        return self.seconds_per_trial * self.trials

    def data(self) -> dict[str, Any]:
        values = asdict(self)
        values["study_seconds"] = self.study_seconds
        return values


# ---------------------------------------------------------------------------------------------------------------
# Reading the metadata


def parse_gpu(text: str) -> list[Gpu]:
    """``24 GB``, ``24``, ``80GiB`` or ``2x80GB``: the GPU(s) to plan for instead of the ones present."""
    match = GPU_PATTERN.match(text or "")
    if not match or float(match.group(2)) <= 0:
        raise UserInputError(f"--gpu {text!r} is not a GPU size; give its memory like '24 GB', or several like "
                             "'2x80GB'.")
    count = int(match.group(1) or 1)
    size = int(float(match.group(2)) * GIGABYTE)
    return [Gpu(f"named GPU {index}", size, size) for index in range(count)]


def present_gpus() -> list[Gpu]:
    """Each CUDA GPU with its free and total memory now; empty without CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        gpus.append(Gpu(torch.cuda.get_device_name(index), int(free), int(total)))
    return gpus


def host_memory_available() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a multimodal config (text_config, llm_config), else the config itself."""
    for key in ("text_config", "llm_config", "language_config"):
        if isinstance(config.get(key), dict) and config[key].get("hidden_size"):
            return {**config, **config[key]}
    return config


def _first(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = config.get(key)
        if value not in (None, 0, ""):
            return value
    return default


def facts_from_metadata(name: str, source: str, config: dict[str, Any],
                        tensor_counts: dict[str, int] | None) -> ModelFacts:
    """ModelFacts from a config.json dictionary and parameter counts per safetensors dtype (None: none known)."""
    text = _text_config(config)
    hidden = int(_first(text, "hidden_size", "n_embd", "d_model", default=0))
    layers = int(_first(text, "num_hidden_layers", "n_layer", "num_layers", default=0))
    if not hidden or not layers:
        raise UserInputError(
            f"The config of {name} names no hidden_size and num_hidden_layers, so it is not a decoder model heretic-tui "
            "can plan for. Check that it is a causal language model."
        )
    heads = int(_first(text, "num_attention_heads", "n_head", default=1))
    intermediate = int(_first(text, "moe_intermediate_size", "intermediate_size", "n_inner", "ffn_dim",
                              default=4 * hidden))
    experts = int(_first(text, "num_local_experts", "num_experts", "n_routed_experts", default=1))
    vocabulary = int(_first(text, "vocab_size", default=0))
    head_size = int(_first(text, "head_dim", default=hidden // max(1, heads)))
    key_value_heads = int(_first(text, "num_key_value_heads", "n_kv_heads", default=heads))
    context = _first(text, "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
    tied = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", True)))
    stored = str(_first(text, "torch_dtype", "dtype", default="") or "")
    if tensor_counts:
        parameters = sum(tensor_counts.values())
        checkpoint_bytes = sum(count * SAFETENSORS_BYTES.get(dtype, 2) for dtype, count in tensor_counts.items())
        floating = {dtype: count for dtype, count in tensor_counts.items() if dtype in DTYPE_NAMES}
        dominant = max(floating, key=floating.get) if floating else None
        checkpoint_dtype = stored or (DTYPE_NAMES[dominant] if dominant else "bfloat16")
        counted_from = "safetensors"
    else:
        attention = hidden * (heads * head_size) * 2 + hidden * (key_value_heads * head_size) * 2
        mlp = 3 * hidden * intermediate * max(1, experts)
        parameters = layers * (attention + mlp) + vocabulary * hidden * (1 if tied else 2)
        checkpoint_dtype = stored or "bfloat16"
        checkpoint_bytes = parameters * DTYPE_BYTES.get(checkpoint_dtype, 2)
        counted_from = "config"
    return ModelFacts(name=name, source=source, parameters=parameters, checkpoint_dtype=checkpoint_dtype,
                      checkpoint_bytes=checkpoint_bytes, layers=layers, hidden_size=hidden,
                      intermediate_size=intermediate, vocabulary_size=vocabulary, key_value_heads=key_value_heads,
                      head_size=head_size, experts=experts, context_length=int(context) if context else None,
                      tied_embeddings=tied, counted_from=counted_from)


def folder_tensor_counts(folder: Path) -> dict[str, int] | None:
    """Parameters per dtype from the headers of the folder's safetensors files (no tensor is read)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    counts: dict[str, int] = {}
    for path in files:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                counts[piece.get_dtype()] = counts.get(piece.get_dtype(), 0) + math.prod(piece.get_shape())
    return counts


def read_model_facts(model: str, settings: Settings) -> ModelFacts:
    """The facts of a model setting: 'demo', a local folder, or a hub id (config and safetensors headers only).

    Nothing here imports torch or builds anything (the wizard calls it while the person waits): a demo model that
    is not built yet is an error that says so.
    """
    from heretic_tui.core.models.demo import demo_model_path, is_demo_model_built
    from heretic_tui.core.models.references import KIND_DEMO, KIND_HUB, parse_model_reference

    reference = parse_model_reference(model, allow_trial=False)
    if reference.kind == KIND_HUB:
        return _hub_facts(reference.location, settings)
    if reference.kind == KIND_DEMO:
        folder = demo_model_path()
        if not is_demo_model_built(folder):
            raise UserInputError("The demo model is not built yet (its first run builds it in a minute or two); "
                                 "it is tiny and fits any machine.")
    else:
        folder = Path(reference.location)
        if not (folder / "config.json").is_file():
            raise UserInputError(f"The model folder {folder} has no config.json, so it is not a Hugging Face model "
                                 "folder. Give the folder that holds config.json and the weights.")
    config = _read_config(folder / "config.json")
    return facts_from_metadata(reference.label, "demo" if reference.kind == KIND_DEMO else "folder", config,
                               folder_tensor_counts(folder))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path} cannot be read as JSON ({error}); the folder is not a complete model.") from None
    if not isinstance(config, dict):
        raise UserInputError(f"{path} is not a JSON object; the folder is not a complete model.")
    return config


def _hub_facts(repo: str, settings: Settings) -> ModelFacts:
    import huggingface_hub
    from huggingface_hub.errors import NotASafetensorsRepoError

    from heretic_tui.core.hub_network import hub_call

    endpoint = huggingface_hub.constants.ENDPOINT
    revision = settings.model.revision or None
    config_path = hub_call(f"reading the config of {repo}",
                           lambda: huggingface_hub.hf_hub_download(repo, "config.json", revision=revision),
                           endpoint=endpoint, settings=settings.hub, repo=repo)

    def safetensors_counts() -> dict[str, int] | None:
        try:
            return dict(huggingface_hub.get_safetensors_metadata(repo, revision=revision).parameter_count)
        except NotASafetensorsRepoError:
            return None

    counts = hub_call(f"reading the safetensors headers of {repo}", safetensors_counts, endpoint=endpoint,
                      settings=settings.hub, repo=repo)
    return facts_from_metadata(repo, "hub", _read_config(Path(config_path)), counts)


# ---------------------------------------------------------------------------------------------------------------
# The arithmetic


def load_dtype(facts: ModelFacts, settings: Settings) -> str:
    """The dtype the loader's chain would try first: 'auto' is the checkpoint's own (float32 stays float32)."""
    first = (settings.model.dtypes or ["auto"])[0]
    dtype = facts.checkpoint_dtype if first == "auto" else first
    if dtype not in DTYPE_BYTES:
        dtype = "bfloat16"
    return dtype


def weight_bytes(facts: ModelFacts, dtype: str, quantization: str) -> int:
    per = DTYPE_BYTES.get(dtype, 2)
    if quantization in QUANTIZED_BYTES:
        decoder = max(0, facts.parameters - facts.embedding_parameters)
        return int(decoder * QUANTIZED_BYTES[quantization] + facts.embedding_parameters * min(per, 2))
    return facts.parameters * per


def response_tokens(settings: Settings) -> int:
    """Tokens generated per evaluation prompt: the refusal budget, plus the reasoning budget when thinking is
    'skip' ('auto' is decided from the chat template once the model is loaded, so it is not counted here)."""
    thinking = settings.abliteration.thinking_max_tokens if settings.abliteration.thinking == "skip" else 0
    return settings.abliteration.refusal_max_tokens + thinking


def activation_bytes(facts: ModelFacts, batch: int, dtype: str) -> int:
    per = DTYPE_BYTES.get(dtype, 2)
    tokens = batch * PROMPT_TOKENS
    layer = tokens * (INTERMEDIATE_VALUES * facts.hidden_size + 2 * facts.intermediate_size) * per
    logits = batch * facts.vocabulary_size * 4
    return int(layer + logits)


def kv_cache_bytes(facts: ModelFacts, batch: int, tokens: int, dtype: str) -> int:
    per = DTYPE_BYTES.get(dtype, 2)
    return int(batch * (PROMPT_TOKENS + tokens) * facts.layers * 2 * facts.key_value_heads * facts.head_size * per)


def usable_gpu_bytes(gpus: list[Gpu]) -> int:
    return int(sum(max(0, gpu.free - CUDA_CONTEXT_BYTES) for gpu in gpus) * USABLE_SHARE)


def seconds_per_trial(facts: ModelFacts, weights: int, batch: int, settings: Settings, on_gpu: bool) -> float:
    """Rough: generation is memory-bound, each batch step reads every weight once; plus one pass for KL."""
    prompts = settings.prompts.max_eval_prompts
    batches = max(1, math.ceil(prompts / max(1, batch)))
    bandwidth = BANDWIDTH_GPU if on_gpu else BANDWIDTH_CPU
    steps = batches * response_tokens(settings) + 2 * batches
    return steps * weights / bandwidth


@dataclass(frozen=True)
class _Figures:
    weights: int
    activations: int
    kv_cache: int

    @property
    def gpu(self) -> int:
        return self.weights + self.activations + self.kv_cache


def _figures(facts: ModelFacts, dtype: str, quantization: str, batch: int, settings: Settings) -> _Figures:
    return _Figures(weight_bytes(facts, dtype, quantization), activation_bytes(facts, batch, dtype),
                    kv_cache_bytes(facts, batch, response_tokens(settings), dtype))


def make_plan(facts: ModelFacts, settings: Settings, gpus: list[Gpu] | None = None, *, named: bool = False,
              host_available: int | None = None, kind: str = KIND_ABLITERATE) -> Plan:
    """The plan for ``facts`` on ``gpus`` (the ones present unless ``named``), with offers when it does not fit."""
    gpus = list(gpus or [])
    on_gpu = bool(gpus) and settings.model.device_map != "cpu"
    quantization = settings.model.quantization if on_gpu else "none"
    dtype = load_dtype(facts, settings)
    batch = settings.model.batch_size or settings.model.max_batch_size
    batch_note = "model.batch_size" if settings.model.batch_size else \
        "the largest the automatic search tries (model.max_batch_size); it settles on a size that fits"
    figures = _figures(facts, dtype, quantization, batch, settings)
    reset_cache = facts.edited_parameters * DTYPE_BYTES.get(dtype, 2) if quantization == "none" else \
        facts.edited_parameters * 2
    if on_gpu:
        capacity = usable_gpu_bytes(gpus)
        host_bytes = reset_cache
        fits_gpu = figures.gpu <= capacity
    else:
        capacity = host_available or 0
        host_bytes = figures.gpu + reset_cache
        fits_gpu = True
    fits_host = host_available is None or host_bytes <= host_available
    fits = fits_gpu and fits_host
    gpu_source = ("named" if named else "present") if gpus else "none"
    plan = Plan(kind=kind, model=facts, load_dtype=dtype, quantization=quantization, batch_size=batch,
                batch_note=batch_note, weights=figures.weights, reset_cache=reset_cache,
                activations=figures.activations, kv_cache=figures.kv_cache, gpu_bytes=figures.gpu,
                host_bytes=host_bytes, gpus=gpus, gpu_source=gpu_source, host_available=host_available, fits=fits,
                verdict="", seconds_per_trial=seconds_per_trial(facts, figures.weights, batch, settings, on_gpu),
                trials=settings.optimization.trials, response_tokens=response_tokens(settings),
                capacity=capacity)
    plan.verdict = _verdict(plan, capacity, fits_gpu, fits_host, on_gpu)
    if not fits:
        plan.offers = _offers(facts, settings, plan, capacity, on_gpu)
    return plan


def _verdict(plan: Plan, capacity: int, fits_gpu: bool, fits_host: bool, on_gpu: bool) -> str:
    where = f"{len(plan.gpus)} GPU(s) with {gigabytes(capacity)} usable" if on_gpu else "host memory (no GPU)"
    if not fits_gpu:
        return f"does not fit: needs {gigabytes(plan.gpu_bytes)} on {where}"
    if not fits_host:
        return (f"does not fit: needs {gigabytes(plan.host_bytes)} of host memory, "
                f"{gigabytes(plan.host_available or 0)} available")
    if on_gpu:
        return f"fits: {gigabytes(plan.gpu_bytes)} of {gigabytes(capacity)} usable on {len(plan.gpus)} GPU(s)"
    return (f"fits in host memory ({gigabytes(plan.host_bytes)} of {gigabytes(plan.host_available or 0)} available); "
            "without a GPU only small models are practical")


def _offers(facts: ModelFacts, settings: Settings, plan: Plan, capacity: int, on_gpu: bool) -> list[Offer]:
    offers: list[Offer] = []
    if not on_gpu:
        return offers
    if plan.quantization == "none":
        eight = _figures(facts, plan.load_dtype, "8bit", plan.batch_size, settings)
        offers.append(Offer("Load the weights in 8 bit (bitsandbytes LLM.int8)", {"model.quantization": "8bit"},
                            eight.gpu <= capacity, eight.gpu,
                            "trials then run as hooks on the quantized weights; closer to full precision than 4 bit"))
        four = _figures(facts, plan.load_dtype, "4bit", plan.batch_size, settings)
        offers.append(Offer("Load the weights in 4 bit (bitsandbytes NF4)", {"model.quantization": "4bit"},
                            four.gpu <= capacity, four.gpu,
                            "trials then run as LoRA-style hooks on the quantized weights; slightly less exact"))
    weights_only = _figures(facts, plan.load_dtype, plan.quantization, 1, settings)
    smaller = _largest_batch(facts, settings, plan, capacity)
    if smaller is not None and smaller < plan.batch_size:
        figures = _figures(facts, plan.load_dtype, plan.quantization, smaller, settings)
        offers.append(Offer(f"A smaller batch ({smaller} prompts)", {"model.batch_size": smaller,
                                                                     "model.max_batch_size": smaller},
                            True, figures.gpu, "trials take longer"))
    host = plan.host_available
    spill = max(0, weights_only.gpu - capacity)
    offload_fits = host is None or spill + plan.reset_cache <= host
    already = settings.model.device_map == "auto"
    offers.append(Offer("CPU offload: the layers that do not fit stay in host memory",
                        {} if already else {"model.device_map": "auto"}, offload_fits, min(weights_only.gpu, capacity),
                        f"{gigabytes(spill)} of weights in host memory, several times slower (every token crosses "
                        "PCIe)" + ("; model.device_map 'auto' (the default) does this by itself" if already else "")))
    return offers


def _largest_batch(facts: ModelFacts, settings: Settings, plan: Plan, capacity: int) -> int | None:
    batch = plan.batch_size
    while batch >= 1:
        if _figures(facts, plan.load_dtype, plan.quantization, batch, settings).gpu <= capacity:
            return batch
        batch //= 2
    return None


def plan_for(model: str, settings: Settings, gpu: str | None = None, *, kind: str = KIND_ABLITERATE,
             read_facts: Callable[[str, Settings], ModelFacts] = read_model_facts) -> Plan:
    """The plan for a model setting on the GPUs present (or the one ``gpu`` names)."""
    facts = read_facts(model, settings)
    gpus = parse_gpu(gpu) if gpu else present_gpus()
    plan = make_plan(facts, settings, gpus, named=bool(gpu), host_available=host_memory_available(), kind=kind)
    if kind == KIND_FINETUNE:
        plan.finetune = finetune_memory(model, settings, facts)
    return plan


def finetune_memory(model: str, settings: Settings, facts: ModelFacts) -> dict[str, Any]:
    """The fine-tuning memory estimate before the download: the finetune plan's own arithmetic on a meta model
    (for a hub id its config.json is the only file fetched)."""
    from heretic_tui.core.models.loading import resolve_model_location

    location = resolve_model_location(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _finetune_memory(location, model, settings, facts)


def _finetune_memory(location: str, model: str, settings: Settings, facts: ModelFacts) -> dict[str, Any]:
    import torch
    from peft import get_peft_model

    from heretic_tui.core.finetuning.modules import meta_model, resolve_target_modules, sequence_length
    from heretic_tui.core.finetuning.plan import estimate_memory
    from heretic_tui.core.finetuning.training import lora_config

    config, weightless = meta_model(location, settings.model)
    dtype = load_dtype(facts, settings)
    weightless = weightless.to(getattr(torch, dtype))
    targets = resolve_target_modules(weightless, list(settings.finetune.target_modules), model)
    with torch.device("meta"):
        adapted = get_peft_model(weightless, lora_config(settings.finetune, targets))
    length = sequence_length(settings.finetune, config, model)
    memory = estimate_memory(adapted, settings.finetune.per_device_batch_size, length,
                             settings.finetune.gradient_checkpointing)
    trainable = sum(parameter.numel() for parameter in adapted.parameters() if parameter.requires_grad)
    return {"sequence_length": length, "batch_size": settings.finetune.per_device_batch_size,
            "trainable_parameters": trainable, "weights": memory.weights, "adapter": memory.adapter,
            "optimizer": memory.optimizer, "activations": memory.activations, "total": memory.total}


def gigabytes(value: float) -> str:
    return f"{value / GIGABYTE:.1f} GB" if value >= 0.1 * GIGABYTE else f"{value / 1024**2:.0f} MB"


def plan_lines(plan: Plan) -> list[str]:
    """The plan as the lines ``heretic-tui plan`` prints and the wizard shows."""
    facts = plan.model
    billions = facts.parameters / 1e9
    size = f"{billions:.2f}B" if billions >= 0.01 else f"{facts.parameters / 1e6:.1f}M"
    counted = "" if facts.counted_from == "safetensors" else " (estimated from the config: no safetensors files)"
    experts = f", {facts.experts} experts" if facts.experts > 1 else ""
    lines = [
        f"model        {facts.name} ({facts.source}): {size} parameters{counted}, {facts.layers} layers{experts}, "
        f"stored as {facts.checkpoint_dtype} ({gigabytes(facts.checkpoint_bytes)})",
        f"loads as     {plan.load_dtype}" + (f", {plan.quantization[0]}-bit" if plan.quantization in QUANTIZED_BYTES
                                                 else "")
        + f", batch {plan.batch_size} ({plan.batch_note})",
        f"weights      {gigabytes(plan.weights)}",
        f"activations  {gigabytes(plan.activations)} for one evaluation batch ({PROMPT_TOKENS}-token prompts)",
        f"KV cache     {gigabytes(plan.kv_cache)} for batch {plan.batch_size} x ({PROMPT_TOKENS} prompt + "
        f"{plan.response_tokens} response) tokens",
        f"reset cache  {gigabytes(plan.reset_cache)} in host memory (the matrices a trial edits)",
    ]
    if plan.gpus:
        gpus = ", ".join(f"{gpu.name} {gigabytes(gpu.free)} free of {gigabytes(gpu.total)}" for gpu in plan.gpus)
        lines.append(f"GPUs         {gpus}" + (" (named with --gpu)" if plan.gpu_source == "named" else ""))
    else:
        lines.append("GPUs         none: the run uses the CPU and host memory")
    lines.append(f"verdict      {plan.verdict}")
    lines.append(f"time         {approximate_duration(plan.seconds_per_trial)} per trial, "
                 f"{approximate_duration(plan.study_seconds)} "
                 f"for {plan.trials} trials ({plan.timing_source})")
    if plan.finetune:
        tune = plan.finetune
        state = "fits" if tune["total"] <= plan.capacity else "does not fit"
        lines.append(f"fine-tune    {state}: {gigabytes(tune['total'])} of {gigabytes(plan.capacity)} (weights {gigabytes(tune['weights'])}, adapter and "
                     f"optimizer {gigabytes(tune['adapter'] + tune['optimizer'])}, activations "
                     f"{gigabytes(tune['activations'])} for batch {tune['batch_size']} x {tune['sequence_length']} "
                     "tokens)")
    for offer in plan.offers:
        change = " ".join(f"--set {key}={value}" for key, value in offer.settings.items()) or "no change needed"
        state = "fits" if offer.fits else "still does not fit"
        lines.append(f"offer        {offer.title}: {state} ({gigabytes(offer.gpu_bytes)} on the GPU); {change}"
                     + (f"; {offer.note}" if offer.note else ""))
    return lines

