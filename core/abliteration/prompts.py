"""Prompt sources: where the harmful and harmless prompts come from, and the checks that make bad ones clear.

A source is written as one string so it fits a CLI flag, an environment variable and a config value alike:

- ``builtin:harmful@train`` / ``builtin:harmless@test``: the offline set that ships with heretic-tui;
- ``prompts.txt``: a text file, one prompt per line;
- ``data.csv#prompt`` (also .json, .jsonl, .parquet): a column of a table file;
- ``folder@train#text``: a folder written by ``datasets.Dataset.save_to_disk``;
- ``hf:owner/name@split#column``: a Hugging Face dataset (split may carry a slice such as ``train[:400]``);
- ``auto``: the built-in set for the demo model, the standard public sets for any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import UserInputError

TEXT_SUFFIXES = {".txt", ".text", ".lst", ""}
TABLE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}

PUBLIC_DEFAULTS = {
    "good_prompts": "hf:mlabonne/harmless_alpaca@train#text",
    "bad_prompts": "hf:mlabonne/harmful_behaviors@train#text",
    "good_eval_prompts": "hf:mlabonne/harmless_alpaca@test#text",
    "bad_eval_prompts": "hf:mlabonne/harmful_behaviors@test#text",
}
DEMO_DEFAULTS = {
    "good_prompts": "builtin:harmless@train",
    "bad_prompts": "builtin:harmful@train",
    "good_eval_prompts": "builtin:harmless@test",
    "bad_eval_prompts": "builtin:harmful@test",
}


@dataclass(frozen=True)
class PromptSource:
    """A parsed source string."""

    kind: str
    location: str
    split: str | None = None
    column: str | None = None

    def describe(self) -> str:
        text = f"{self.kind}:{self.location}"
        if self.split:
            text += f"@{self.split}"
        if self.column:
            text += f"#{self.column}"
        return text


def resolve_auto(source: str, setting_name: str, model: str) -> str:
    """Replace ``auto`` with the concrete default for this model."""
    if source.strip() != "auto":
        return source
    from heretic_tui.core.models.demo import DEMO_MODEL_NAME

    defaults = DEMO_DEFAULTS if model == DEMO_MODEL_NAME else PUBLIC_DEFAULTS
    return defaults[setting_name]


def parse_source(text: str) -> PromptSource:
    text = text.strip()
    if not text:
        raise UserInputError("A prompt source is empty. Give a file path, 'builtin:harmful@train' or 'hf:owner/name'.")
    column = None
    if "#" in text:
        text, column = text.rsplit("#", 1)
        column = column.strip() or None
    if text.startswith("builtin:"):
        name, _, split = text[len("builtin:"):].partition("@")
        return PromptSource("builtin", name, split or "train", column)
    if text.startswith("hf:"):
        name, _, split = text[len("hf:"):].partition("@")
        return PromptSource("hub", name, split or "train", column)
    path_text, split = text, None
    if "@" in text and not Path(text).exists():
        path_text, _, split = text.rpartition("@")
    path = Path(path_text).expanduser()
    if path.is_dir():
        return PromptSource("disk", str(path), split or None, column)
    return PromptSource("file", str(path), split or None, column)


@dataclass(frozen=True)
class Prompt:
    """One prompt and where it came from ("line 12 of prompts.txt"), so a problem with it can name its place."""

    text: str
    where: str


def _clean(prompts: Sequence[object], origin: str, unit: str, container: str) -> list[Prompt]:
    """The non-blank prompts, each placed as "<unit> <1-based number> of <container>" (a line, a row)."""
    cleaned = [
        Prompt(str(item).strip(), f"{unit} {number} of {container}")
        for number, item in enumerate(prompts, start=1)
        if item is not None and str(item).strip()
    ]
    if not cleaned:
        raise UserInputError(f"{origin} holds no prompts (it is empty or every row is blank). Give a source with prompts.")
    return cleaned


def _read_text_file(path: Path, origin: str) -> list[Prompt]:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise UserInputError(
            f"{origin}: {path} looks like a binary file, not text. Give a UTF-8 text file with one prompt per line, "
            "or a .json/.jsonl/.csv/.parquet file with '#column'."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"{origin}: {path} is not UTF-8 text. Save it as UTF-8, one prompt per line.") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _clean(lines, f"{origin} ({path})", "line", str(path))


def _column(dataset: Any, column: str | None, origin: str, place: str) -> list[Prompt]:
    names = list(getattr(dataset, "column_names"))
    if column is None:
        if len(names) == 1:
            column = names[0]
        else:
            raise UserInputError(
                f"{origin} has several columns ({', '.join(names)}); say which one holds the prompts by appending "
                f"'#column', e.g. '#{names[0]}'."
            )
    if column not in names:
        raise UserInputError(
            f"{origin} has no column '{column}'. Its columns are: {', '.join(names)}. Append '#<column>' with one of them."
        )
    return _clean(list(dataset[column]), origin, "row", f"{place}, column '{column}'")


def _read_table_file(path: Path, source: PromptSource, origin: str) -> list[Prompt]:
    import datasets

    file_format = TABLE_FORMATS[path.suffix.lower()]
    try:
        dataset = datasets.load_dataset(file_format, data_files=str(path), split="train")
    except Exception as error:
        raise UserInputError(
            f"{origin}: {path} cannot be read as {file_format.upper()} ({type(error).__name__}: {error}). "
            "Check the file's format."
        ) from None
    return _column(dataset, source.column, f"{origin} ({path})", str(path))


def _read_disk_dataset(source: PromptSource, origin: str) -> list[Prompt]:
    import datasets

    path = Path(source.location)
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:
        raise UserInputError(
            f"{origin}: {path} is a folder but not one written by datasets' save_to_disk ({error}). Give a file, "
            "or a folder that holds dataset_info.json."
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        split = source.split or ("train" if "train" in loaded else next(iter(loaded)))
        if split not in loaded:
            raise UserInputError(f"{origin}: {path} has no split '{split}'; its splits are {', '.join(loaded)}.")
        loaded = loaded[split]
        return _column(loaded, source.column, f"{origin} ({path})", f"{path} (split {split})")
    return _column(loaded, source.column, f"{origin} ({path})", str(path))


def _read_hub_dataset(source: PromptSource, origin: str) -> list[Prompt]:
    import datasets

    try:
        dataset = datasets.load_dataset(source.location, split=source.split)
    except Exception as error:
        raise UserInputError(
            f"{origin}: the Hugging Face dataset '{source.location}' (split '{source.split}') could not be loaded "
            f"({type(error).__name__}: {str(error)[:200]}). If this machine is offline or the dataset is private, "
            "point the setting at a local file instead (a .txt with one prompt per line, or 'data.csv#column'), "
            "or use 'builtin:harmful@train' / 'builtin:harmless@train'."
        ) from None
    return _column(dataset, source.column or ("text" if "text" in dataset.column_names else None), origin,
                   f"the dataset {source.location} (split {source.split})")


def load_prompts(text: str, limit: int | None = None, origin: str = "Prompts") -> list[str]:
    """Load a prompt source into a list of non-empty prompts, at most ``limit`` of them."""
    return [prompt.text for prompt in load_prompt_records(text, limit, origin)]


def load_prompt_records(text: str, limit: int | None = None, origin: str = "Prompts") -> list[Prompt]:
    """Like :func:`load_prompts`, with where each prompt came from (its line or row)."""
    source = parse_source(text)
    if source.kind == "builtin":
        from heretic_tui.core.abliteration.builtin_prompts import builtin_prompts

        prompts = _clean(builtin_prompts(source.location, source.split or "train"), origin, "prompt",
                         source.describe())
    elif source.kind == "hub":
        prompts = _read_hub_dataset(source, origin)
    elif source.kind == "disk":
        prompts = _read_disk_dataset(source, origin)
    else:
        path = Path(source.location)
        if not path.is_file():
            raise UserInputError(
                f"{origin}: the prompt file {path} does not exist. Check the path, or use 'builtin:harmful@train', "
                "'hf:owner/name@split#column', or a folder written by save_to_disk."
            )
        if path.suffix.lower() in TABLE_FORMATS:
            prompts = _read_table_file(path, source, origin)
        else:
            if source.column:
                raise UserInputError(
                    f"{origin}: {path} is a plain text file, so '#{source.column}' does not apply. Remove the column "
                    "or use a .json/.jsonl/.csv/.parquet file."
                )
            prompts = _read_text_file(path, origin)
    return prompts[:limit] if limit else prompts


def check_prompts_fit(
    tokenizer: Any,
    context_tokens: int | None,
    system_prompt: str,
    prompts: Sequence[Prompt],
    origin: str,
    answer_tokens: int = 0,
) -> None:
    """Raise a UserInputError naming the prompts that do not fit the model's context (with room for the answer).

    Run before any work starts: an overlong prompt otherwise reaches the model and fails as an allocation of
    terabytes ("tried to allocate 2777705556025 bytes") after the model has loaded, or is silently garbled.
    ``context_tokens`` None (unknown) checks nothing.
    """
    if not context_tokens or not prompts:
        return
    from heretic_tui.core.models.chat_template import format_chat

    room = context_tokens - answer_tokens
    rendered = format_chat(tokenizer, system_prompt, [prompt.text for prompt in prompts])
    lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]
    too_long = [(prompt, length) for prompt, length in zip(prompts, lengths) if length > room]
    if not too_long:
        return
    first, length = too_long[0]
    others = ""
    if len(too_long) > 1:
        listed = "; ".join(prompt.where for prompt, _ in too_long[1:4])
        others = f" {len(too_long) - 1} more are too long ({listed}{' ...' if len(too_long) > 4 else ''})."
    answer = f", less {answer_tokens} for the answer" if answer_tokens else ""
    raise UserInputError(
        f"{origin}: the prompt at {first.where} is {length} tokens long once rendered through the chat template, "
        f"more than the {room} tokens the model has room for ({context_tokens} in its context{answer}).{others} "
        "Shorten or remove those prompts, or use a model with a longer context."
    )
