"""Loading a chat model and its tokenizer, ready for batched inference.

Loading follows what a user of a GPU box expects: the dtype chain is tried in order and each candidate must
generate one finite token before it is accepted (some checkpoints load in fp16 and then produce NaNs); padding is
on the left so the last position of every row is the last prompt token; a missing pad token falls back to EOS.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.hub_network import raise_if_hub_failure
from heretic_tui.core.models.references import is_hub_id_shape
from heretic_tui.core.settings import ModelSettings

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
    if not is_hub_id_shape(name):
        raise UserInputError(
            f"Model path {name} does not exist and is not a Hugging Face hub id (owner/name). Check the path, or use "
            "--model demo for the built-in demo model."
        )
    return name


def check_model(settings: ModelSettings) -> Any | None:
    """Cheap checks before a job starts: the folder exists, the tokenizer loads and has a chat template.

    Returns the tokenizer for further checks (None for the demo model, which may not be built yet).
    """
    from heretic_tui.core.models.demo import DEMO_MODEL_NAME

    if settings.model == DEMO_MODEL_NAME:
        return None
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
    return tokenizer


CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
"""Where configs of the architectures transformers knows keep the context length (the first one present wins)."""


def context_length(config: Any) -> int | None:
    """The longest sequence the model was built for, from its config; None when the config does not say."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in CONTEXT_LENGTH_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_config(location: str, settings: ModelSettings) -> Any:
    """The model's config alone (no weights), for checks before a job starts."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(location, revision=settings.revision or None,
                                          trust_remote_code=settings.trust_remote_code)
    except Exception as error:
        raise_if_hub_failure(error, f"loading the config of {location}")
        raise UserInputError(
            f"The config of {location} could not be loaded ({type(error).__name__}: {str(error)[:300]}). Check that "
            "the folder or hub id is right and holds config.json, and that the machine is online for hub ids."
        ) from None


def load_tokenizer(location: str, settings: ModelSettings) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, revision=settings.revision or None, trust_remote_code=settings.trust_remote_code
        )
    except Exception as error:
        raise_if_hub_failure(error, f"loading the tokenizer of {location}")
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
    if settings.quantization not in ("4bit", "8bit"):
        return None
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise UserInputError(
            f"model.quantization = '{settings.quantization}' needs a CUDA GPU and the bitsandbytes package "
            "(pip install 'heretic-tui[gpu]'). Set quantization = 'none' on this machine."
        )
    from transformers import BitsAndBytesConfig

    if settings.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
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
            raise_if_hub_failure(error, f"downloading the weights of {location}")
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
