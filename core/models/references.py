"""What a model reference names, decided in one place: the built-in demo, a Hugging Face Hub repository, a local
folder (a full model, a LoRA adapter, an export heretic-tui wrote), or one trial of an abliteration run
(``RUN_DIR#TRIAL``).

Loading, comparing, the registry's lineage and the model card all need the same answer to "is this a hub id?", so
it is answered here only: a string that names an existing local path is always that path (a folder called
``models/qwen`` is not the repository ``models/qwen``), a path-looking string (``./x``, ``/x``, ``~/x``) is never a
hub id, and everything else is a hub id exactly when it is ``owner/name`` by huggingface_hub's own rules
(:func:`huggingface_hub.utils.validate_repo_id`), so this project never disagrees with the Hub about a name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.models.demo import DEMO_MODEL_NAME
from heretic_tui.core.shipping.metadata import has_metadata

KIND_DEMO = "demo"
KIND_HUB = "hub"
KIND_FOLDER = "folder"
KIND_TRIAL = "trial"

MODEL_CONFIG_FILE = "config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"

_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")
_PATH_PREFIXES = (".", "/", "~")


def looks_like_local_path(text: str) -> bool:
    """Absolute or home-relative paths, the only strings that reveal where things live on this machine."""
    return text.startswith(("/", "~")) or bool(_WINDOWS_PATH.match(text))


def is_hub_id_shape(text: str) -> bool:
    """``owner/name`` as the Hub allows it, whatever the local disk holds (for names that are never paths)."""
    if text.count("/") != 1 or text.startswith(_PATH_PREFIXES) or _WINDOWS_PATH.match(text):
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def is_hub_id(text: str) -> bool:
    """True for ``owner/name`` that is not also an existing local path."""
    return is_hub_id_shape(text) and not Path(text).expanduser().exists()


def public_name(text: str) -> str:
    """A reference safe to publish: hub ids and built-in names as they are, local paths as their last component."""
    if looks_like_local_path(text):
        return Path(text.replace("\\", "/")).name or "model"
    return text


def split_trial(text: str) -> tuple[str, int] | None:
    """``RUN_DIR#TRIAL`` as (run folder text, trial number), or None when ``text`` names no trial."""
    head, separator, tail = text.rpartition("#")
    if separator and head and tail.strip().isdigit():
        return head, int(tail)
    return None


@dataclass(frozen=True)
class ModelReference:
    """One model as the user named it, what kind of thing it is, and where it lives (absolute for local paths)."""

    text: str
    kind: str
    location: str
    trial: int | None = None

    @property
    def is_adapter(self) -> bool:
        """A LoRA adapter folder (loaded on the base model its adapter_config.json names)."""
        folder = Path(self.location)
        return (self.kind == KIND_FOLDER and (folder / ADAPTER_CONFIG_FILE).is_file()
                and not (folder / MODEL_CONFIG_FILE).is_file())

    @property
    def is_export(self) -> bool:
        """A folder heretic-tui wrote (an abliteration export or a fine-tune output): it has heretic.json."""
        return self.kind == KIND_FOLDER and has_metadata(Path(self.location))

    @property
    def canonical(self) -> str:
        """The reference as job.json and the registry store it: absolute paths, ``RUN#TRIAL`` for trials."""
        return f"{self.location}#{self.trial}" if self.kind == KIND_TRIAL else self.location

    @property
    def label(self) -> str:
        """A short name for tables: the folder's or run's name, the hub id, or ``demo``."""
        if self.kind == KIND_TRIAL:
            return f"{Path(self.location).name}#{self.trial}"
        if self.kind == KIND_FOLDER:
            return Path(self.location).name
        return self.location


def parse_model_reference(text: str, *, allow_trial: bool = True) -> ModelReference:
    """Classify one model argument; local paths become absolute so the worker, the registry and lineage agree.

    Only the shape is checked here (nothing is loaded): a string that is neither an existing path, ``demo``, a
    trial nor an ``owner/name`` hub id is an error that says which forms are accepted.
    """
    text = str(text).strip()
    accepted = "a model folder, a hub id (owner/name), 'demo'" + (" or RUN_DIR#TRIAL" if allow_trial else "")
    if not text:
        raise UserInputError(f"A model reference is empty. Give {accepted}.")
    trial = split_trial(text) if allow_trial else None
    if trial is not None and not Path(text).expanduser().exists():
        run, number = trial
        return ModelReference(text, KIND_TRIAL, str(Path(run).expanduser().resolve()), number)
    if text == DEMO_MODEL_NAME:
        return ModelReference(text, KIND_DEMO, text)
    path = Path(text).expanduser()
    if path.exists():
        return ModelReference(text, KIND_FOLDER, str(path.resolve()))
    if is_hub_id_shape(text):
        return ModelReference(text, KIND_HUB, text)
    if text.startswith(_PATH_PREFIXES) or looks_like_local_path(text) or "/" not in text:
        return ModelReference(text, KIND_FOLDER, str(path.resolve()))
    raise UserInputError(
        f"Model {text!r} is neither an existing path nor a valid Hugging Face hub id (owner/name with letters, "
        f"digits, '-', '_' and '.'). Give {accepted}."
    )


def normalise_model_reference(reference: str | Path) -> str:
    """The one string that names a model in the registry: an absolute path for anything local, else as given.

    Lineage links a child to its parent by this string, so a relative path and an absolute one must agree; a hub id,
    ``demo`` and a name that is not on this disk (a model known only by name) stay as they are.
    """
    text = str(reference)
    path = Path(text).expanduser()
    if text == DEMO_MODEL_NAME:
        return text
    if path.exists() or text.startswith(_PATH_PREFIXES) or looks_like_local_path(text):
        return str(path.resolve())
    return text


def adapter_base_model(folder: Path) -> str:
    """The base model an adapter folder names (``base_model_name_or_path``), or an error saying how to fix it."""
    config_path = Path(folder) / ADAPTER_CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserInputError(f"{config_path} cannot be read ({error}). Save the adapter again.") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not base:
        raise UserInputError(
            f"The adapter {folder} does not name its base model (base_model_name_or_path in adapter_config.json). "
            "Add it, or use the merged model folder instead."
        )
    return str(base)
