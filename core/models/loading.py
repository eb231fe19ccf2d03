"""Loading a chat model and running it in batches: chat formatting, residuals, first-token logits, generation.

Loading follows what a user of a GPU box expects: the dtype chain is tried in order and each candidate must
generate one finite token before it is accepted (some checkpoints load in fp16 and then produce NaNs); padding is
on the left so the last position of every row is the last prompt token; a missing pad token falls back to EOS.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import ModelSettings

HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class LoadedModel:
    """A model ready for batched inference, with what was chosen while loading it."""

    model: Any
    tokenizer: Any
    location: str
    dtype: str
    seconds: float

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_model_location(name: str, report: Callable[[str, int, int], None] | None = None) -> str:
    """Turn the model setting into a local folder or a hub id, building the demo model when asked for it."""
    from heretic_tui.core.models.demo import DEMO_MODEL_NAME, ensure_demo_model

    if name == DEMO_MODEL_NAME:
        return str(ensure_demo_model(report))
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserInputError(f"Model path {path} is a file; give the folder that holds config.json.")
        if not (path / "config.json").is_file():
            raise UserInputError(
                f"Model folder {path} has no config.json, so it is not a Hugging Face model folder. Give the folder "
                "that holds config.json and the weights (e.g. the snapshot folder inside the HF cache)."
            )
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or not HUB_ID_PATTERN.match(name):
        raise UserInputError(
            f"Model path {name} does not exist and is not a Hugging Face hub id (owner/name). Check the path, or use "
            "--model demo for the built-in demo model."
        )
    return name


def check_model(settings: ModelSettings) -> None:
    """Cheap checks before a job starts: the folder exists, the tokenizer loads and has a chat template."""
    from heretic_tui.core.models.demo import DEMO_MODEL_NAME

    if settings.model == DEMO_MODEL_NAME:
        return
    location = resolve_model_location(settings.model)
    if settings.chat_template and not Path(settings.chat_template).expanduser().is_file():
        raise UserInputError(
            f"model.chat_template: the template file {settings.chat_template} does not exist. Give a Jinja file "
            "or leave the setting empty to use the model's own template."
        )
    tokenizer = load_tokenizer(location, settings)
    if not getattr(tokenizer, "chat_template", None):
        raise UserInputError(
            f"The model {settings.model} has no chat template, so prompts cannot be rendered as a chat. Use an "
            "instruction-tuned model, or set model.chat_template to a Jinja template file."
        )


def load_tokenizer(location: str, settings: ModelSettings) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, revision=settings.revision or None, trust_remote_code=settings.trust_remote_code
        )
    except Exception as error:
        raise UserInputError(
            f"The tokenizer of {location} could not be loaded ({type(error).__name__}: {str(error)[:300]}). "
            "Check that the folder or hub id is right and complete (tokenizer.json or tokenizer.model), and that "
            "the machine is online for hub ids."
        ) from None
    if settings.chat_template:
        tokenizer.chat_template = Path(settings.chat_template).expanduser().read_text(encoding="utf-8")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _quantization_config(settings: ModelSettings) -> Any:
    if settings.quantization != "4bit":
        return None
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise UserInputError(
            "model.quantization = '4bit' needs a CUDA GPU and the bitsandbytes package "
            "(pip install 'heretic-tui[gpu]'). Set quantization = 'none' on this machine."
        )
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def _device_map(settings: ModelSettings) -> Any:
    if settings.device_map == "auto" and not torch.cuda.is_available():
        return "cpu"
    return settings.device_map


def load_model(
    settings: ModelSettings,
    report: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> LoadedModel:
    """Load the model with the first dtype of the chain that loads and generates a finite token."""
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    location = resolve_model_location(settings.model, report)
    tokenizer = load_tokenizer(location, settings)
    if not getattr(tokenizer, "chat_template", None):
        raise UserInputError(
            f"The model {settings.model} has no chat template. Use an instruction-tuned model, or set "
            "model.chat_template to a Jinja template file."
        )
    quantization = _quantization_config(settings)
    failures: list[str] = []
    for dtype_name in settings.dtypes:
        dtype: Any = "auto" if dtype_name == "auto" else DTYPES[dtype_name]
        try:
            model = AutoModelForCausalLM.from_pretrained(
                location,
                dtype=dtype,
                device_map=_device_map(settings),
                revision=settings.revision or None,
                trust_remote_code=settings.trust_remote_code,
                quantization_config=quantization,
            )
        except (OSError, ValueError) as error:
            if "does not appear to have" in str(error) or "no file named" in str(error).lower():
                raise UserInputError(
                    f"The model folder {location} has no weights ({str(error)[:200]}). Give a complete model folder."
                ) from None
            failures.append(f"{dtype_name}: {type(error).__name__}: {str(error)[:200]}")
            log(f"loading with dtype {dtype_name} failed: {error}")
            continue
        except RuntimeError as error:
            failures.append(f"{dtype_name}: {type(error).__name__}: {str(error)[:200]}")
            log(f"loading with dtype {dtype_name} failed: {error}")
            continue
        model.eval()
        if model.generation_config is not None and model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        if _generates_finite_token(model, tokenizer):
            chosen = str(next(model.parameters()).dtype).replace("torch.", "")
            return LoadedModel(model, tokenizer, location, chosen, time.perf_counter() - started)
        failures.append(f"{dtype_name}: the test generation produced non-finite logits")
        log(f"dtype {dtype_name} produced non-finite logits; trying the next one")
        del model
    raise RuntimeError(f"The model {settings.model} could not be loaded with any dtype: " + "; ".join(failures))


def _generates_finite_token(model: Any, tokenizer: Any) -> bool:
    batch = tokenizer(["Hello"], return_tensors="pt").to(next(model.parameters()).device)
    with torch.inference_mode():
        logits = model(**batch).logits[:, -1, :]
    return bool(torch.isfinite(logits).all())


def format_chat(tokenizer: Any, system_prompt: str, prompts: Sequence[str]) -> list[str]:
    """Render prompts through the chat template, ready for the assistant's answer.

    Some templates (Gemma's) reject a system turn; then the system prompt is put in front of the user's message.
    """
    rendered = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:
            if not system_prompt:
                raise
            merged = [{"role": "user", "content": f"{system_prompt}\n\n{prompt}"}]
            text = tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        rendered.append(text)
    return rendered


def encode(tokenizer: Any, texts: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
    """Tokenize a batch with left padding; the templates already hold the special tokens."""
    batch = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    return {key: value.to(device) for key, value in batch.items() if key in ("input_ids", "attention_mask")}


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding, as generate() computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def last_token_residuals(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int,
    progress: Callable[[int], None] | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Hidden state of the last prompt token after every layer, in float32: shape [prompts, layers, hidden]."""
    rows = []
    done = 0
    for chunk in batches(texts, batch_size):
        if check_cancelled:
            check_cancelled()
        batch = encode(loaded.tokenizer, chunk, loaded.device)
        with torch.inference_mode():
            output = loaded.model(
                **batch, position_ids=positions(batch["attention_mask"]), output_hidden_states=True, use_cache=False
            )
        states = torch.stack([state[:, -1, :] for state in output.hidden_states[1:]], dim=1)
        rows.append(states.float().cpu())
        done += len(chunk)
        if progress:
            progress(done)
    return torch.cat(rows)


def first_token_log_probabilities(loaded: LoadedModel, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """Log-probabilities of the first generated token for each prompt, in float32: shape [prompts, vocabulary]."""
    rows = []
    for chunk in batches(texts, batch_size):
        batch = encode(loaded.tokenizer, chunk, loaded.device)
        with torch.inference_mode():
            output = loaded.model(**batch, position_ids=positions(batch["attention_mask"]), use_cache=False,
                                  logits_to_keep=1)
        rows.append(torch.log_softmax(output.logits[:, -1, :].float(), dim=-1))
    return torch.cat(rows)


def generate_until_verdict(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    verdict: Callable[[str, bool], bool | None],
    check_cancelled: Callable[[], None] | None = None,
) -> list[tuple[str, bool]]:
    """Greedy generation where each sequence stops as soon as ``verdict(text, finished)`` returns a bool.

    Rows whose verdict is known are dropped from the batch and from the KV cache, so a batch of quick refusals
    costs a few tokens instead of ``max_new_tokens``. Returns (response, verdict) per prompt, in order.
    """
    tokenizer = loaded.tokenizer
    eos_ids = _eos_ids(loaded)
    results: list[tuple[str, bool] | None] = [None] * len(texts)
    for offset in range(0, len(texts), batch_size):
        chunk = texts[offset:offset + batch_size]
        batch = encode(tokenizer, chunk, loaded.device)
        attention_mask = batch["attention_mask"]
        position_ids = positions(attention_mask)
        rows = list(range(offset, offset + len(chunk)))
        generated: list[list[int]] = [[] for _ in chunk]
        active = list(range(len(chunk)))
        with torch.inference_mode():
            output = loaded.model(input_ids=batch["input_ids"], attention_mask=attention_mask,
                                  position_ids=position_ids, use_cache=True, logits_to_keep=1)
            cache = getattr(output, "cache", None) or output.past_key_values
            cache_keyword = cache_argument_name(loaded.model)
            for step in range(max_new_tokens):
                if check_cancelled:
                    check_cancelled()
                next_tokens = output.logits[:, -1, :].argmax(dim=-1)
                keep: list[int] = []
                for slot, local in enumerate(active):
                    token = int(next_tokens[slot])
                    finished = token in eos_ids
                    if not finished:
                        generated[local].append(token)
                    last = finished or step == max_new_tokens - 1
                    text = tokenizer.decode(generated[local], skip_special_tokens=True)
                    decision = verdict(text, last)
                    if decision is None and last:
                        decision = False
                    if decision is not None:
                        results[rows[local]] = (text, bool(decision))
                    else:
                        keep.append(slot)
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=attention_mask.device)
                    cache.batch_select_indices(index)
                    attention_mask = attention_mask[index]
                    position_ids = position_ids[index]
                    next_tokens = next_tokens[index]
                    active = [active[slot] for slot in keep]
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=1)
                position_ids = position_ids[:, -1:] + 1
                output = loaded.model(input_ids=next_tokens[:, None], attention_mask=attention_mask,
                                      position_ids=position_ids, use_cache=True, **{cache_keyword: cache})
    return [item if item is not None else ("", True) for item in results]


def cache_argument_name(model: Any) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; use whichever this model's forward takes."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    config_eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    for value in (config_eos, loaded.tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(item) for item in value)
    return ids


def choose_batch_size(
    loaded: LoadedModel,
    texts: Sequence[str],
    settings: ModelSettings,
    log: Callable[[str], None] = print,
) -> int:
    """The fastest batch size that fits: try powers of two and keep the best prompts-per-second.

    Each candidate generates a few tokens for a full batch, repeated for at least a quarter of a second so a busy
    machine does not decide the result; the search stops at the first out-of-memory error or once throughput has
    clearly dropped twice. Ties go to the larger size, which wins on longer generations.
    """
    if settings.batch_size:
        return settings.batch_size
    undecided: Callable[[str, bool], bool | None] = lambda text, finished: None if not finished else False
    best_size, best_rate = 1, 0.0
    limit = min(settings.max_batch_size, max(1, len(texts)))
    size, worse = 1, 0
    while size <= limit:
        sample = list(texts[:size])
        try:
            generate_until_verdict(loaded, sample, size, 2, undecided)
            repetitions, started = 0, time.perf_counter()
            while repetitions < 5 and (repetitions < 1 or time.perf_counter() - started < 0.25):
                generate_until_verdict(loaded, sample, size, 8, undecided)
                repetitions += 1
            rate = size * repetitions / (time.perf_counter() - started)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            log(f"batch size {size} does not fit in memory")
            break
        log(f"batch size {size}: {rate:.1f} prompts/s")
        if rate >= 0.95 * best_rate:
            if rate > best_rate or size > best_size:
                best_size, best_rate = size, max(rate, best_rate)
            worse = 0
        elif rate < 0.9 * best_rate:
            worse += 1
            if worse >= 2:
                break
        size = size * 2 if size * 2 <= limit or size == limit else limit
    return best_size
