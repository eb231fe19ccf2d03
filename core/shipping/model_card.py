"""The model card (README.md) and the side files that make an exported folder complete and shareable.

A folder that goes to the Hub is read by strangers: the card must say what was done, with the numbers that show
it, which model it came from, and how to do it again, and it must carry nothing private. Everything here is built
from ``heretic.json`` (written by an abliteration export or a fine-tune) and the run's resolved settings, never from
the machine it runs on, so absolute local paths are reduced to their last component and no token or secret ever
reaches the card or the shipped config.

The front matter (the Hub's search fields: library, base model, tags) is built with huggingface_hub's
``ModelCardData``, so it is the YAML the Hub parses; the card and the shipped config are written whole or not at all
(:mod:`heretic_tui.core.atomic_files`), so an interrupted write never leaves half a card.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from huggingface_hub import ModelCard, ModelCardData

from heretic_tui.core.atomic_files import write_text_atomically
from heretic_tui.core.settings import setting_fields
from heretic_tui.core.models.references import (
    DEMO_MODEL_NAME,
    is_hub_id,
    is_hub_id_shape,
    looks_like_local_path,
    public_name,
)
from heretic_tui.core.shipping.metadata import (
    FORMAT_ADAPTER,
    METHOD_ABLITERATION,
    METHOD_FINE_TUNE,
    NOT_INSTALLED,
)

MODEL_CARD_FILE = "README.md"
SHIPPED_CONFIG_FILE = "heretic-config.toml"
HUB_URL = "https://huggingface.co"

PROCESSOR_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "chat_template.json",
    "generation_config.json",
)
"""Files a multimodal or chat model needs besides weights and tokenizer; copied when the source has them."""

_SECRET_WORDS = ("token", "secret", "password", "api_key")


def shareable_config(settings_text: str) -> str:
    """The resolved settings with local paths cut to their names, private settings (the notify command and URL: an
    ntfy topic is as good as a password) at their defaults and secret-looking values blanked.

    The run folder keeps the full config for local reproduction; this copy travels with a model to other machines,
    where a path like ``/home/alice/data/prompts.txt`` means nothing and would only reveal the user's layout.
    """
    document = tomlkit.parse(settings_text)
    for spec in setting_fields():
        section = document.get(spec.section)
        if spec.private and isinstance(section, Mapping) and spec.name in section:
            section[spec.name] = tomlkit.item(spec.default)
    _sanitise_table(document)
    header = (
        "# Settings of the heretic-tui run that made this model. Local paths were shortened to their file or folder\n"
        "# names: point them at your own copies before running it again.\n"
    )
    return header + tomlkit.dumps(document)


def _sanitise_table(table: Any) -> None:
    for key in list(table.keys()):
        value = table[key]
        if isinstance(value, Mapping):
            _sanitise_table(value)
        elif any(word in str(key).lower() for word in _SECRET_WORDS) and isinstance(value, str):
            table[key] = ""
        elif isinstance(value, str) and looks_like_local_path(value):
            table[key] = public_name(value)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str) and looks_like_local_path(item):
                    value[index] = public_name(item)


def write_model_card(
    folder: Path, metadata: dict[str, Any], settings_text: str | None, *, name: str | None = None
) -> Path:
    """Write README.md (and, given the run's settings, the shareable heretic-config.toml) into ``folder``.

    ``name`` is the title, for folders written under a temporary name and renamed afterwards (exports).
    """
    folder = Path(folder)
    has_config = settings_text is not None
    if settings_text is not None:
        write_text_atomically(folder / SHIPPED_CONFIG_FILE, shareable_config(settings_text))
    card_path = folder / MODEL_CARD_FILE
    write_text_atomically(card_path, model_card_for_folder(folder, metadata, name=name, has_config=has_config))
    return card_path


def model_card_for_folder(folder: Path, metadata: dict[str, Any], *, name: str | None = None,
                          has_config: bool = False) -> str:
    """The card text for ``folder`` (not written): an adapter folder gets the PEFT card, a shipped config is named."""
    folder = Path(folder)
    is_adapter = (folder / "adapter_config.json").is_file() or metadata.get("format") == FORMAT_ADAPTER
    has_config = has_config or (folder / SHIPPED_CONFIG_FILE).is_file()
    return render_model_card(metadata, name=name or folder.name, is_adapter=is_adapter, has_config=has_config)


def copy_processor_files(source: str, destination: Path, revision: str | None = None) -> list[str]:
    """Copy processor, chat-template and generation config files the source has and ``destination`` lacks.

    ``save_pretrained`` of a causal LM writes the weights and the tokenizer, but a vision-language model's image
    processor config or a standalone chat_template.json would be lost; a hub id is read from the local cache only.
    Returns the names copied.
    """
    destination = Path(destination)
    copied = []
    for file_name in PROCESSOR_FILES:
        if (destination / file_name).exists():
            continue
        found = _source_file(source, file_name, revision)
        if found is not None:
            shutil.copyfile(found, destination / file_name)
            copied.append(file_name)
    return copied


def _source_file(source: str, file_name: str, revision: str | None) -> Path | None:
    folder = Path(source).expanduser()
    if folder.is_dir():
        candidate = folder / file_name
        return candidate if candidate.is_file() else None
    if not is_hub_id_shape(source):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, file_name, revision=revision or None)
    return Path(cached) if isinstance(cached, str) and Path(cached).is_file() else None


def render_model_card(metadata: dict[str, Any], *, name: str, is_adapter: bool, has_config: bool) -> str:
    """The whole card: YAML front matter for the Hub's search, then what was done, results, origin, reproduction."""
    method = str(metadata.get("method") or "")
    source = str(metadata.get("source_model") or "")
    sections = [
        f"# {public_name(name)}\n",
        _summary(metadata, method, source, is_adapter),
        _results(metadata, method),
        _benchmarks(metadata),
        _base_model(source),
        _usage(is_adapter),
        _reproduction(metadata, method, has_config),
    ]
    body = "\n".join(section for section in sections if section)
    return str(ModelCard(f"---\n{_card_data(method, source, is_adapter).to_yaml()}\n---\n\n{body}"))


def _tags(method: str, is_adapter: bool) -> list[str]:
    tags = ["heretic", "heretic-tui"]
    if method == METHOD_ABLITERATION:
        tags += ["abliterated", "uncensored"]
    if method == METHOD_FINE_TUNE:
        tags += ["fine-tuned", "lora"]
    elif is_adapter:
        tags.append("lora")
    return tags


def _card_data(method: str, source: str, is_adapter: bool) -> ModelCardData:
    """The Hub's search fields: library, base model (only a real hub id links), task and tags."""
    base_model = source if is_hub_id(source) else None
    return ModelCardData(
        library_name="peft" if is_adapter else "transformers",
        base_model=base_model,
        base_model_relation="adapter" if is_adapter and base_model else None,
        pipeline_tag="text-generation",
        tags=_tags(method, is_adapter),
    )


def _source_phrase(source: str) -> str:
    if is_hub_id(source):
        return f"[{source}]({HUB_URL}/{source})"
    if source == DEMO_MODEL_NAME:
        return "the built-in heretic-tui demo model"
    if source:
        return f"a local model (`{public_name(source)}`)"
    return "a model"


def _summary(metadata: dict[str, Any], method: str, source: str, is_adapter: bool) -> str:
    origin = _source_phrase(source)
    if method == METHOD_ABLITERATION:
        if is_adapter:
            opening = f"This LoRA adapter removes the refusal behaviour of {origin} by abliteration; it was made with"
        else:
            opening = f"This is {origin} with its refusal behaviour removed by abliteration, made with"
        text = (
            f"{opening} heretic-tui. Abliteration finds the direction in the model's "
            "activations that separates the prompts it refuses from the ones it answers, and projects it out of the "
            "weights that write into the residual stream; an Optuna search picks where and how strongly, trading "
            "refusals against the change to harmless answers (KL divergence)."
        )
        if metadata.get("trial") is not None:
            text += f" It uses the parameters of optimisation trial {metadata['trial']}."
        text += "\n\nIt may answer requests the original declined. Use it responsibly and within the law."
        return text + "\n"
    if method == METHOD_FINE_TUNE:
        kind = "A LoRA adapter" if is_adapter else "A model"
        return (
            f"{kind} fine-tuned from {origin} with heretic-tui (LoRA"
            f"{', merged into the weights' if not is_adapter else ''}).\n"
        )
    described = f" ({method})" if method else ""
    kind = "A LoRA adapter" if is_adapter else "A model"
    return f"{kind} made from {origin} with heretic-tui{described}.\n"


def _metric(metadata: dict[str, Any], key: str) -> Any:
    metrics = metadata.get("metrics")
    if isinstance(metrics, dict) and metrics.get(key) is not None:
        return metrics[key]
    return metadata.get(key)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) >= 1e4 or (value and abs(value) < 1e-3) else f"{value:.{digits}f}"
    return str(value)


def _results(metadata: dict[str, Any], method: str) -> str:
    rows: list[tuple[str, str, str]] = []
    if method == METHOD_ABLITERATION:
        total = _metric(metadata, "refusal_total")
        out_of = f"/{total}" if total is not None else ""
        baseline = _metric(metadata, "baseline_refusals")
        refusals = _metric(metadata, "refusals")
        if refusals is not None or baseline is not None:
            rows.append((
                "Refusals on harmful evaluation prompts",
                f"{_number(baseline)}{out_of if baseline is not None else ''}",
                f"{_number(refusals)}{out_of if refusals is not None else ''}",
            ))
        kl = _metric(metadata, "kl_divergence")
        if kl is not None:
            rows.append(("KL divergence from the original on harmless prompts (first token)", "0 (reference)",
                         _number(kl)))
    else:
        for label, key in (("Evaluation loss", "eval_loss"), ("Perplexity", "perplexity")):
            before, after = _metric(metadata, f"{key}_before"), _metric(metadata, f"{key}_after")
            if before is not None or after is not None:
                rows.append((f"{label} on held-out data", _number(before), _number(after)))
    if not rows:
        return ""
    lines = ["## Results", "", "| Metric | Original | This model |", "| --- | --- | --- |"]
    lines += [f"| {label} | {before} | {after} |" for label, before, after in rows]
    if method == METHOD_ABLITERATION:
        lines += ["", "Fewer refusals is the goal; a small KL divergence means harmless answers barely changed."]
    return "\n".join(lines) + "\n"


def _benchmarks(metadata: dict[str, Any]) -> str:
    """lm-evaluation-harness results (``heretic-tui evaluate``), this model beside the original where it was run."""
    evaluation = metadata.get("evaluation")
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("model"), dict):
        return ""
    original = evaluation.get("original") if isinstance(evaluation.get("original"), dict) else {}
    lines = ["## Benchmarks", "",
             f"lm-evaluation-harness {evaluation.get('version') or ''}, measured offline with `heretic-tui evaluate`.",
             "", "| Task | Metric | Examples | Original | This model |", "| --- | --- | --- | --- | --- |"]
    for task, result in evaluation["model"].items():
        metrics = result.get("metrics", {}) if isinstance(result, dict) else {}
        before = original.get(task, {}).get("metrics", {}) if isinstance(original.get(task), dict) else {}
        for metric, value in metrics.items():
            if metric.endswith("_stderr"):
                continue
            error = metrics.get(f"{metric}_stderr")
            after = _number(value) + (f" ± {_number(error)}" if isinstance(error, (int, float)) else "")
            lines.append(f"| {task} | {metric} | {result.get('samples', 'n/a')} | {_number(before.get(metric))} | "
                         f"{after} |")
    return "\n".join(lines) + "\n"


def _base_model(source: str) -> str:
    if not source:
        return ""
    if is_hub_id(source):
        text = f"[{source}]({HUB_URL}/{source}). Its license and usage terms apply to this model too."
    else:
        text = f"{_source_phrase(source)}, which is not on the Hugging Face Hub under that name."
    return f"## Base model\n\n{text}\n"


def _usage(is_adapter: bool) -> str:
    if is_adapter:
        code = (
            "from peft import AutoPeftModelForCausalLM\n"
            "from transformers import AutoTokenizer\n\n"
            'model = AutoPeftModelForCausalLM.from_pretrained("<this repository or folder>")\n'
            'tokenizer = AutoTokenizer.from_pretrained("<this repository or folder>")'
        )
    else:
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("<this repository or folder>")\n'
            'tokenizer = AutoTokenizer.from_pretrained("<this repository or folder>")'
        )
    return f"## Usage\n\n```python\n{code}\n```\n"


def _reproduction(metadata: dict[str, Any], method: str, has_config: bool) -> str:
    lines = ["## How to reproduce", ""]
    config = f"--config {SHIPPED_CONFIG_FILE}" if has_config else ""
    if method == METHOD_ABLITERATION:
        adapter = " --adapter" if metadata.get("format") == "adapter" else ""
        trial = metadata.get("trial", "N")
        lines += [
            "```sh",
            f"heretic-tui abliterate --headless {config} --run-dir my-run".replace("  ", " "),
            f"heretic-tui export my-run --trial {trial} --output my-model{adapter}",
            "```",
            "",
            "With the same seed on the same hardware the search repeats the same trials; elsewhere, pick the trial "
            "whose parameters are closest to the ones below.",
        ]
    elif method == METHOD_FINE_TUNE:
        lines += ["```sh", f"heretic-tui finetune --headless {config}".rstrip(), "```"]
    else:
        lines.append(f"Run heretic-tui with {SHIPPED_CONFIG_FILE if has_config else 'the same settings'}.")
    if has_config:
        lines += ["", f"`{SHIPPED_CONFIG_FILE}` holds every setting of the run that made this model."]
    parameters = metadata.get("parameters")
    if isinstance(parameters, dict) and parameters:
        lines += ["", "| Parameter | Value |", "| --- | --- |"]
        lines += [f"| {key} | {_number(value)} |" for key, value in sorted(parameters.items())]
    sources = metadata.get("prompt_sources")
    if isinstance(sources, dict) and sources:
        lines += ["", "Prompts: " + ", ".join(f"{key} `{public_name(str(value))}`" for key, value in sources.items())]
    versions = metadata.get("versions")
    if isinstance(versions, dict) and versions:
        lines += ["", "Library versions: " + ", ".join(_versions(versions.items())) + "."]
    return "\n".join(lines) + "\n"


def _versions(items: Iterable[tuple[str, Any]]) -> list[str]:
    return [f"{name} {version}" for name, version in items if version and version != NOT_INSTALLED]
