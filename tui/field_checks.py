"""The checks a wizard runs on a field as it is typed, beyond the type and range the settings layer checks: does
the model exist (a folder with config.json, a hub id, the demo), do the training data sources exist.

Both the basic questions and the advanced form's editors show the same hint and block the summary on the same
problems, so a mistyped path is caught in either mode before anything starts. The shape of a model reference is the
core's (:func:`heretic_tui.core.api.parse_model_reference`); these checks add what the disk says about it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from heretic_tui.core.api import HUB_PREFIX, KIND_DEMO, KIND_HUB, parse_model_reference
from heretic_tui.core.errors import UserInputError
from heretic_tui.tui.finetune_choices import data_entries

FieldCheck = Callable[[Any], tuple[str, bool]]
"""A field's value to (hint, whether the value can be used); a False answer blocks the wizard's summary."""


def describe_model_choice(text: Any) -> tuple[str, bool]:
    """A hint under the model field, and whether the text can be a model at all (folder, hub id, or demo)."""
    text = str(text).strip()
    if not text:
        return "Give a model folder, a Hugging Face id (owner/name) or 'demo'.", False
    try:
        reference = parse_model_reference(text, allow_trial=False)
    except UserInputError as error:
        return str(error), False
    if reference.kind == KIND_DEMO:
        return "The built-in demo model (built offline on first use, about a minute on a CPU).", True
    if reference.kind == KIND_HUB:
        return "A Hugging Face hub id: downloaded (or read from the cache) when the run starts.", True
    path = Path(reference.location)
    if not path.exists():
        return f"{text} does not exist (nor is it a hub id, owner/name).", False
    if path.is_file():
        return f"{path} is a file; give the folder that holds config.json.", False
    if reference.is_adapter:
        return (f"{path} is a LoRA adapter, not a whole model: give its base model, or export a merged model "
                "and give that folder."), False
    if not (path / "config.json").is_file():
        return f"{path} has no config.json, so it is not a model folder.", False
    return f"Local model folder {path}", True


def describe_data_choice(value: Any) -> tuple[str, bool]:
    """A hint under the data field, and whether every source in it exists (hub datasets are checked at start).

    ``value`` is the field's text (sources separated by commas or lines) or the setting's list of sources.
    """
    entries = list(value) if isinstance(value, list) else data_entries(str(value))
    if not entries:
        return "Give at least one file or folder (PDF, text, Markdown, JSONL), or hf:owner/name@split#column.", False
    missing = [entry for entry in entries if not entry.startswith(HUB_PREFIX) and not Path(entry).exists()]
    if missing:
        return f"{missing[0]} does not exist.", False
    folders = sum(1 for entry in entries if Path(entry).is_dir())
    hub = sum(1 for entry in entries if entry.startswith(HUB_PREFIX))
    files = len(entries) - folders - hub
    parts = [f"{count} {word}" for count, word in ((files, "file(s)"), (folders, "folder(s)"),
                                                   (hub, "hub dataset(s)")) if count]
    return "Sources: " + ", ".join(parts) + ". The format is detected when the run starts.", True


FIELD_CHECKS: dict[str, FieldCheck] = {
    "model.model": describe_model_choice,
    "finetune.training_data": describe_data_choice,
}
"""The settings whose editors run a check of their own, by ``section.name``."""
