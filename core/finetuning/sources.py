"""Reading the user's training data: files, folders and Hugging Face datasets, with the format detected and shown.

A user points at "my documents" and expects heretic-tui to cope with whatever is in there, so files that cannot be
read (encrypted, scanned or corrupt PDFs, text that is not UTF-8) are reported by name and skipped; only when
nothing usable is left is that an error. Structured data is different: a JSONL file with a wrong row is a mistake
the user wants to hear about with the line number, because silently dropping rows would train on less than they
think.

Everything read ends up as one of two things: a :class:`Document` (free text, cut into windows or pairs later) or a
:class:`Conversation` (chat turns, instruction rows become a user turn and an assistant turn).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import NetworkError, UserInputError
from heretic_tui.core.settings import HubSettings

DOCUMENT_SUFFIXES = {".pdf": "pdf", ".txt": "text", ".md": "markdown", ".markdown": "markdown"}
ROW_SUFFIXES = {".jsonl": "jsonl", ".json": "json"}
SUPPORTED_SUFFIXES = {**DOCUMENT_SUFFIXES, **ROW_SUFFIXES}
SUPPORTED_TEXT = ", ".join(SUPPORTED_SUFFIXES)
HUB_PREFIX = "hf:"

ROLE_NAMES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant"}
"""Roles accepted in chat rows; ShareGPT's human/gpt are mapped onto the chat template's roles."""

KIND_CHAT = "chat"
KIND_INSTRUCTION = "instruction"
KIND_TEXT = "text rows"

ROW_EXAMPLES = {
    KIND_CHAT: '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}',
    KIND_INSTRUCTION: '{"instruction": "...", "input": "... (optional)", "output": "..."}',
    KIND_TEXT: '{"text": "..."}',
}


@dataclass(frozen=True)
class Document:
    """Free text from one file or row; ``title`` names it in generated instructions."""

    title: str
    text: str
    origin: str


@dataclass(frozen=True)
class Conversation:
    """Chat turns as the chat template expects them (``role``/``content`` dicts); ``kind`` says where they came from."""

    messages: tuple[tuple[str, str], ...]
    origin: str
    kind: str = KIND_CHAT

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class SourceReport:
    """What one source turned out to be, for the format line shown before training."""

    source: str
    format: str
    items: int


@dataclass
class SourceData:
    documents: list[Document] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    reports: list[SourceReport] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> set[str]:
        found = {conversation.kind for conversation in self.conversations}
        if self.documents:
            found.add("documents")
        return found


class _RowProblem(Exception):
    """A row that does not match its file's schema; turned into a UserInputError with the file and line."""


def read_sources(
    entries: Sequence[str], check_cancelled: Callable[[], None] | None = None, hub: HubSettings | None = None
) -> SourceData:
    """Read every source; raise a UserInputError for bad input, or when nothing usable is left.

    ``hub`` bounds the waits for ``hf:`` datasets (defaults otherwise); a Hub that cannot be reached is a
    NetworkError (exit code 4), a dataset that does not exist a UserInputError.
    """
    if not entries:
        raise UserInputError(
            "No training data was given. Pass --data PATH (a file or a folder, repeatable) or set "
            "finetune.training_data in config.toml, e.g. training_data = [\"./my-documents\"]."
        )
    data = SourceData()
    for entry in entries:
        if check_cancelled:
            check_cancelled()
        if entry.strip().startswith(HUB_PREFIX):
            _read_hub_source(entry.strip(), data, hub or HubSettings())
            continue
        path = Path(entry).expanduser()
        if not path.exists():
            raise UserInputError(
                f"The training data {entry} does not exist. Check the path given with --data (or in "
                "finetune.training_data); a Hugging Face dataset is written 'hf:owner/name@split#column'."
            )
        if path.is_dir():
            _read_folder(path, data, check_cancelled)
        else:
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise UserInputError(
                    f"The training data file {path} has the extension '{path.suffix or '(none)'}', which heretic-tui "
                    f"cannot read. Supported: {SUPPORTED_TEXT}. Convert it (e.g. save it as PDF or plain text) or "
                    "pass the folder that holds it."
                )
            _read_file(path, data)
    if not data.documents and not data.conversations:
        raise UserInputError(_nothing_usable_message(entries, data))
    return data


def _nothing_usable_message(entries: Sequence[str], data: SourceData) -> str:
    given = ", ".join(entries)
    if not data.skipped:
        return (
            f"The training data ({given}) holds no text to train on: every file is empty. Add documents with text, "
            "or point --data at the right folder."
        )
    shown = "; ".join(f"{path}: {reason}" for path, reason in data.skipped[:8])
    more = f" (and {len(data.skipped) - 8} more)" if len(data.skipped) > 8 else ""
    return (
        f"None of the training data ({given}) could be read: {shown}{more}. Fix those files (decrypt PDFs, run OCR "
        "on scans, e.g. with ocrmypdf, save text as UTF-8) or add readable .txt/.md/.pdf/.jsonl files."
    )


def _read_folder(folder: Path, data: SourceData, check_cancelled: Callable[[], None] | None) -> None:
    files = sorted(
        path for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    usable = [path for path in files if path.suffix.lower() in SUPPORTED_SUFFIXES]
    if not usable:
        found = sorted({path.suffix.lower() or "(no extension)" for path in files})
        holds = f"only files with other extensions ({', '.join(found)})" if files else "no files at all"
        raise UserInputError(
            f"The training data folder {folder} holds {holds}. heretic-tui reads {SUPPORTED_TEXT} files (in "
            "sub-folders too). Put your documents in it, or pass the right folder or file with --data."
        )
    data.ignored.extend(str(path) for path in files if path.suffix.lower() not in SUPPORTED_SUFFIXES)
    for path in usable:
        if check_cancelled:
            check_cancelled()
        _read_file(path, data)


def _read_file(path: Path, data: SourceData) -> None:
    suffix = path.suffix.lower()
    if suffix in ROW_SUFFIXES:
        kind, items = _read_row_file(path)
        _add_rows(data, str(path), f"{ROW_SUFFIXES[suffix]} {kind}", items)
        return
    text, problem = read_pdf(path) if suffix == ".pdf" else read_text_file(path)
    if problem is not None:
        data.skipped.append((str(path), problem))
        return
    assert text is not None
    if not text.strip():
        data.skipped.append((str(path), "empty"))
        return
    data.documents.append(Document(title=_title(path), text=text, origin=str(path)))
    data.reports.append(SourceReport(str(path), DOCUMENT_SUFFIXES[suffix], 1))


def _add_rows(data: SourceData, source: str, format_name: str, items: list[Document | Conversation]) -> None:
    for item in items:
        if isinstance(item, Document):
            data.documents.append(item)
        else:
            data.conversations.append(item)
    data.reports.append(SourceReport(source, format_name, len(items)))


def _title(path: Path) -> str:
    return path.stem.replace("_", " ").replace("-", " ").strip() or path.name


def read_text_file(path: Path) -> tuple[str | None, str | None]:
    """The file's text, or why it was skipped."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        return None, f"cannot be read ({error.strerror or error})"
    if b"\x00" in raw[:8192]:
        return None, "a binary file, not text"
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text (save it as UTF-8)"


def read_pdf(path: Path) -> tuple[str | None, str | None]:
    """The PDF's text layer, or why it was skipped (encrypted, no text layer, corrupt)."""
    from pypdf import PasswordType, PdfReader

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception as error:
                return None, f"encrypted and cannot be opened ({type(error).__name__}: {error})"
            if unlocked == PasswordType.NOT_DECRYPTED:
                return None, "encrypted with a password (save an unencrypted copy)"
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as error:
        return None, f"corrupt or not a PDF ({type(error).__name__}: {str(error)[:120]})"
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        return None, "has no text layer (a scan?); run OCR on it first, e.g. with ocrmypdf"
    return text, None


def _read_row_file(path: Path) -> tuple[str, list[Document | Conversation]]:
    """Rows of a .jsonl (one object per line) or .json (an array of objects) file, all of one detected kind."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"The training data file {path} cannot be read as UTF-8 text ({error}).") from None
    if path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(path, text)
        unit = "line"
    else:
        rows = _json_rows(path, text)
        unit = "item"
    return _convert_rows(rows, str(path), unit)


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise UserInputError(
                f"{path} line {number} is not valid JSON ({error.msg} at column {error.colno}). Every line of a "
                f"JSONL file must be one JSON object, e.g. {ROW_EXAMPLES[KIND_CHAT]}. Fix line {number} or remove it."
            ) from None


def _json_rows(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserInputError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}). A .json training file must be an array "
            f"of objects such as {ROW_EXAMPLES[KIND_INSTRUCTION]}; use .jsonl for one object per line."
        ) from None
    if not isinstance(document, list):
        raise UserInputError(
            f"{path} holds a JSON {type(document).__name__}, not an array of rows. A .json training file must be "
            f"an array of objects such as {ROW_EXAMPLES[KIND_INSTRUCTION]}."
        )
    yield from enumerate(document, start=1)


def _convert_rows(rows: Iterable[tuple[int, Any]], source: str, unit: str) -> tuple[str, list[Document | Conversation]]:
    kind: str | None = None
    first = 0
    items: list[Document | Conversation] = []
    for number, row in rows:
        where = f"{source} {unit} {number}"
        if not isinstance(row, dict):
            raise UserInputError(
                f"{where} is a JSON {type(row).__name__}, not an object. Each row must look like "
                f"{ROW_EXAMPLES[kind or KIND_CHAT]}. Fix {unit} {number} or remove it."
            )
        if kind is None:
            kind = detect_row_kind(row)
            first = number
            if kind is None:
                raise UserInputError(
                    f"{where} has the keys {sorted(row)}, which is not training data heretic-tui knows. Each row "
                    f"must be chat data {ROW_EXAMPLES[KIND_CHAT]}, instruction data {ROW_EXAMPLES[KIND_INSTRUCTION]} "
                    f"or raw text {ROW_EXAMPLES[KIND_TEXT]}. Fix {unit} {number}."
                )
        try:
            item = convert_row(row, kind, where)
        except _RowProblem as problem:
            raise UserInputError(
                f"{where}: {problem}. The first row ({unit} {first}) is {kind} data, so every row must look like "
                f"{ROW_EXAMPLES[kind]}. Fix {unit} {number} or remove it."
            ) from None
        if item is not None:
            items.append(item)
    if kind is None:
        raise UserInputError(f"{source} holds no rows. Add training rows such as {ROW_EXAMPLES[KIND_CHAT]}.")
    return kind, items


def detect_row_kind(row: dict[str, Any]) -> str | None:
    """The schema of a row from its keys: chat, instruction or raw text (None when it is none of them)."""
    if "messages" in row or "conversations" in row:
        return KIND_CHAT
    if "instruction" in row and "output" in row:
        return KIND_INSTRUCTION
    if "prompt" in row and "completion" in row:
        return KIND_INSTRUCTION
    if "text" in row:
        return KIND_TEXT
    return None


def convert_row(row: dict[str, Any], kind: str, where: str) -> Document | Conversation | None:
    """One row as a Document or Conversation; None for a row with nothing in it. Raises _RowProblem."""
    if kind == KIND_CHAT:
        return Conversation(_messages(row), where, KIND_CHAT)
    if kind == KIND_INSTRUCTION:
        prompt_key, answer_key = ("instruction", "output") if "instruction" in row else ("prompt", "completion")
        if prompt_key not in row or answer_key not in row:
            raise _RowProblem(f"the keys '{prompt_key}' and '{answer_key}' are missing (it has {sorted(row)})")
        prompt, answer, extra = row[prompt_key], row[answer_key], row.get("input", "")
        for name, value in ((prompt_key, prompt), (answer_key, answer), ("input", extra)):
            if value is not None and not isinstance(value, str):
                raise _RowProblem(f"'{name}' must be a string, not {type(value).__name__}")
        prompt = (prompt or "").strip()
        if extra and extra.strip():
            prompt = f"{prompt}\n\n{extra.strip()}"
        if not prompt or not (answer or "").strip():
            return None
        return Conversation((("user", prompt), ("assistant", answer.strip())), where, KIND_INSTRUCTION)
    if "text" not in row:
        raise _RowProblem(f"the key 'text' is missing (it has {sorted(row)})")
    if not isinstance(row["text"], str):
        raise _RowProblem(f"'text' must be a string, not {type(row['text']).__name__}")
    if not row["text"].strip():
        return None
    return Document(title=where, text=row["text"], origin=where)


def _messages(row: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    if "messages" not in row and "conversations" not in row:
        raise _RowProblem(f"the key 'messages' is missing (it has {sorted(row)})")
    key = "messages" if "messages" in row else "conversations"
    value = row.get(key)
    if not isinstance(value, list) or not value:
        raise _RowProblem(f"'{key}' must be a non-empty list of turns")
    turns = []
    for index, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            raise _RowProblem(f"turn {index} of '{key}' is not an object")
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        if role not in ROLE_NAMES:
            raise _RowProblem(
                f"turn {index} has the role {role!r}; allowed roles are system, user and assistant"
            )
        if not isinstance(content, str):
            raise _RowProblem(f"turn {index} has no text 'content'")
        turns.append((ROLE_NAMES[role], content))
    if not any(role == "assistant" for role, _ in turns):
        raise _RowProblem("the conversation has no assistant turn, so there is nothing to learn from it")
    return tuple(turns)


def parse_hub_source(text: str) -> tuple[str, str, str | None]:
    """``hf:owner/name@split#column`` -> (name, split, column); split defaults to train."""
    body = text[len(HUB_PREFIX):]
    column = None
    if "#" in body:
        body, column = body.rsplit("#", 1)
        column = column.strip() or None
    name, _, split = body.partition("@")
    if not name.strip():
        raise UserInputError(f"The training data {text!r} names no dataset. Write it as 'hf:owner/name@split#column'.")
    return name.strip(), (split.strip() or "train"), column


def _check_hub_dataset(name: str, hub: HubSettings) -> None:
    """Ask the Hub about the dataset before ``datasets`` loads it, so each failure gets its own paragraph.

    ``datasets`` reports a refused connection, a DNS failure, a timeout and a dataset that does not exist all as
    "Couldn't reach ... on the Hub", after half a minute of retries. Asked directly (bounded waits and retries, see
    :mod:`heretic_tui.core.hub_network`), an unreachable Hub is a NetworkError naming the endpoint and a missing
    dataset is a UserInputError naming the dataset. Offline (``HF_HUB_OFFLINE``) the Hub is not asked: a dataset
    cached earlier still loads.
    """
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import RepositoryNotFoundError

    from heretic_tui.core.hub_network import configure_hub_client, hub_call

    if constants.HF_HUB_OFFLINE:
        return
    configure_hub_client(hub)
    api = HfApi()
    token = get_token()

    def exists() -> bool:
        try:
            api.dataset_info(name, token=token)
        except RepositoryNotFoundError:
            return False
        return True

    found = hub_call(f"looking up the training dataset {name}", exists, endpoint=api.endpoint, settings=hub,
                     secrets=[token], repo=name, hint="Then run the same command again, or save the data as a "
                     "local .jsonl file and pass that file with --data.")
    if not found:
        raise UserInputError(
            f"The Hugging Face dataset '{name}' given as training data was not found on {api.endpoint} (or it is "
            "private or gated and the token cannot see it). Check the name in 'hf:owner/name@split#column', or log "
            "in with `hf auth login` (and accept the dataset's terms) for a private or gated dataset."
        )


def _read_hub_source(text: str, data: SourceData, hub: HubSettings) -> None:
    import datasets

    name, split, column = parse_hub_source(text)
    _check_hub_dataset(name, hub)
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as error:
        from huggingface_hub import constants

        if isinstance(error, ConnectionError) and not constants.HF_HUB_OFFLINE:
            raise NetworkError(
                f"The Hugging Face dataset '{name}' (split '{split}') given as training data could not be downloaded "
                f"from {constants.ENDPOINT} ({str(error)[:200]}). Check the network connection and a proxy, then run "
                "the same command again; or save the data as a local .jsonl file and pass that file with --data."
            ) from None
        raise UserInputError(
            f"The Hugging Face dataset '{name}' (split '{split}') given as training data could not be loaded "
            f"({type(error).__name__}: {str(error)[:200]}). If this machine is offline or the dataset is private, "
            "save the data as a local .jsonl file (one JSON object per line) and pass that file with --data instead."
        ) from None
    if column is not None:
        if column not in dataset.column_names:
            raise UserInputError(
                f"The dataset '{name}' has no column '{column}'; its columns are {', '.join(dataset.column_names)}. "
                f"Write the source as 'hf:{name}@{split}#<column>' with one of them."
            )
        rows: Iterable[tuple[int, Any]] = (
            (number, _column_row(value, column)) for number, value in enumerate(dataset[column], start=1)
        )
    else:
        rows = enumerate(dataset, start=1)
    kind, items = _convert_rows(rows, f"hf:{name}@{split}", "row")
    _add_rows(data, text, f"Hugging Face {kind}", items)


def _column_row(value: Any, column: str) -> dict[str, Any]:
    """A single chosen column as a row: a list of turns is chat, anything else is text."""
    if isinstance(value, list):
        return {"messages": value}
    return {"text": value}
