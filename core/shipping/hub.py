"""Ship a model folder (full model or LoRA adapter) to the Hugging Face Hub.

Everything goes through ``huggingface_hub.HfApi`` so authentication, LFS/Xet transfers and the Hub's API versions
stay the library's problem. What this module adds is what a headless tool needs around it: checks that fail early
with a sentence the user can act on, a token that is resolved once and never persisted, a fallback model card,
per-file progress, resumption (files already on the Hub with the same content are not sent again), and every
request bounded, retried and explained by :mod:`heretic_tui.core.hub_network`.

The token is only ever held in local variables and passed to ``HfApi`` calls; it is never put into an event, a
log line, an exception message, a settings object or a file, and every error text is scrubbed of it.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import huggingface_hub
from huggingface_hub import CommitOperationAdd, HfApi, RepoFile
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from huggingface_hub.utils.sha import git_hash, sha_fileobj
from rich.filesize import decimal

from heretic_tui.core.errors import StorageError, UserInputError
from heretic_tui.core.hub_network import LOGIN_HELP, TOKEN_SETTINGS_URL, configure_hub_client, hub_call
from heretic_tui.core.runs.run_directory import slugify
from heretic_tui.core.settings import HubSettings
from heretic_tui.core.shipping.metadata import METADATA_FILE, library_versions, read_metadata
from heretic_tui.core.shipping.model_card import MODEL_CARD_FILE, model_card_for_folder, write_model_card

__all__ = [
    "LOGIN_HELP",
    "METADATA_FILE",
    "MODEL_CARD_FILE",
    "TOKEN_SETTINGS_URL",
    "FileTransfer",
    "default_repo_name",
    "ensure_model_card",
    "hub_user_name",
    "resolve_token",
    "upload_model_folder",
    "validate_model_folder",
    "validate_repo_name",
]

REPO_SUFFIX = "-heretic"
MAX_REPO_PART_LENGTH = 96

STATE_SENDING = "sending"
STATE_SENT = "sent"
STATE_ON_HUB = "already on the Hub"

_NOT_WEIGHTS = {"training_args.bin", "optimizer.bin", "scheduler.bin", "rng_state.bin"}
_PROGRESS_INTERVAL_SECONDS = 0.5

T = TypeVar("T")

ProgressCallback = Callable[[str, int, int], None]
"""``report(path_in_repo, bytes_done, bytes_total)``, called once per file after it is on the Hub."""


@dataclass(frozen=True)
class FileTransfer:
    """Where one file of an upload stands: its bytes sent so far, and the whole upload's bytes done."""

    path: str
    done: int
    size: int
    state: str
    """:data:`STATE_SENDING`, :data:`STATE_SENT` or :data:`STATE_ON_HUB` (skipped: same content already there)."""
    total_done: int
    total: int


class UploadObserver(Protocol):
    """What an upload reports to (a worker's JobContext fits): phases, log lines, and the chance to cancel."""

    def phase(self, name: str, total: int | None = None, description: str = "") -> AbstractContextManager[Any]: ...

    def log(self, message: str) -> None: ...

    def check_cancelled(self) -> None: ...


def _api(endpoint: str | None, settings: HubSettings) -> HfApi:
    """A client without a stored token (the token is passed per call), whose requests are bounded in time."""
    configure_hub_client(settings)
    return HfApi(endpoint=endpoint, library_name="heretic-tui", library_version=library_versions()["heretic-tui"])


def validate_model_folder(folder: Path) -> list[str]:
    """Check that ``folder`` holds a loadable model or adapter and return the files to upload (POSIX, relative).

    Checked before anything touches the network, because a half-uploaded repository without weights is worse than
    no repository. Hidden files (atomic-write leftovers, caches) and the local ``heretic.json`` are left out.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserInputError(
            f"{folder} is not a folder. Pass the folder an export or a fine-tune wrote (it holds config.json and "
            "*.safetensors files)."
        )
    files = _uploadable_files(folder)
    names = {Path(name).name for name in files}
    is_adapter = "adapter_config.json" in names
    if is_adapter:
        if not {"adapter_model.safetensors", "adapter_model.bin"} & names:
            raise UserInputError(
                f"{folder} is an adapter folder without weights: adapter_config.json is there but "
                "adapter_model.safetensors is not. Re-run the fine-tune's save step, or pick the folder it wrote."
            )
        return files
    if "config.json" not in files:
        raise UserInputError(
            f"{folder} has no config.json, so it is not a Transformers model folder. Pick the folder an export "
            "wrote (it holds config.json, *.safetensors and the tokenizer files), or an adapter folder with "
            "adapter_config.json."
        )
    weights = [name for name in files if _is_weights_file(name)]
    if not weights:
        raise UserInputError(
            f"{folder} is a folder without weights: it has config.json but no *.safetensors or *.bin file. Export "
            "the model again (the export may have been interrupted), or pick the folder that holds the weights."
        )
    _check_shards_present(folder, files)
    return files


def _uploadable_files(folder: Path) -> list[str]:
    found = []
    try:
        paths = list(folder.rglob("*"))
    except OSError as error:
        raise UserInputError(f"{folder} cannot be read ({error.strerror or error}). Check its permissions.") from None
    for path in paths:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if relative.as_posix() == METADATA_FILE:
            continue
        found.append(relative.as_posix())
    return sorted(found)


def _is_weights_file(name: str) -> bool:
    base = Path(name).name
    return base.endswith(".safetensors") or (base.endswith(".bin") and base not in _NOT_WEIGHTS)


def _check_shards_present(folder: Path, files: list[str]) -> None:
    """A sharded checkpoint whose index names a shard that is not there would upload fine and never load."""
    present = set(files)
    for index_name in (name for name in files if name.endswith(".index.json")):
        try:
            weight_map = json.loads((folder / index_name).read_text(encoding="utf-8")).get("weight_map", {})
            shards = {str(shard) for shard in weight_map.values()}
        except (OSError, ValueError, AttributeError):
            raise UserInputError(
                f"{folder / index_name} is not a valid shard index (JSON with a weight_map). Export the model again."
            ) from None
        prefix = str(Path(index_name).parent.as_posix()) + "/" if "/" in index_name else ""
        missing = sorted({prefix + shard for shard in shards} - present)
        if missing:
            raise UserInputError(
                f"{folder} is missing {len(missing)} weight shard(s) listed in {index_name}, first {missing[0]}. "
                "The export was probably interrupted: export the model again."
            )


def validate_repo_name(name: str) -> str:
    """Check a repository id against the Hub's rules (huggingface_hub's own validator) and return it.

    The error says which rule the name breaks, in words, because the library's message is written for developers.
    """
    parts = name.split("/")
    if len(parts) != 2 or not all(parts):
        raise UserInputError(
            f"Repository name {name!r} must look like 'owner/model-name' (your user or organisation name, a slash, "
            "then the model name), e.g. 'alice/qwen2.5-0.5b-instruct-heretic'."
        )
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise UserInputError(f"Repository name {name!r} is not valid: {_broken_rule(parts)}. Choose another name.") \
            from None
    return name


def _broken_rule(parts: list[str]) -> str:
    for part in parts:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", part):
            return f"{part!r} may only contain letters, digits, '-', '_' and '.'"
        if part[0] in "-." or part[-1] in "-.":
            return f"{part!r} may not start or end with '-' or '.'"
        if "--" in part or ".." in part:
            return f"{part!r} may not contain '--' or '..'"
        if len(part) > MAX_REPO_PART_LENGTH:
            return f"{part!r} is {len(part)} characters long; at most {MAX_REPO_PART_LENGTH} are allowed"
    if parts[1].endswith(".git"):
        return f"{parts[1]!r} may not end with '.git'"
    return "the Hub does not accept it"


def default_repo_name(user: str, folder: Path) -> str:
    """``<user>/<model>-heretic`` from the model folder's name, so the suggested name says where it came from."""
    model = slugify(Path(folder).name)
    model = re.sub(r"[^a-z0-9_.-]+", "-", model)
    model = re.sub(r"([-.])[-.]+", r"\1", model).strip("-.") or "model"
    if model.endswith(".git"):
        model = model.removesuffix(".git").rstrip("-.") or "model"
    if not model.endswith(REPO_SUFFIX):
        model = model[: MAX_REPO_PART_LENGTH - len(REPO_SUFFIX)].rstrip("-.") + REPO_SUFFIX
    return validate_repo_name(f"{user}/{model}")


def resolve_token(explicit: str | None) -> str:
    """The token to upload with: the explicit value (a password field, a flag), else HF_TOKEN, else the cached login.

    There is no interactive prompt, because this also runs headless where nobody can answer one.
    """
    if explicit and explicit.strip():
        return explicit.strip()
    from_environment = os.environ.get("HF_TOKEN", "").strip()
    if from_environment:
        return from_environment
    try:
        cached = huggingface_hub.get_token()
    except Exception as error:
        raise UserInputError(f"Could not read the Hugging Face login ({type(error).__name__}). {LOGIN_HELP}") from None
    if cached:
        return cached
    raise UserInputError(f"No Hugging Face token found. {LOGIN_HELP}")


def hub_user_name(token: str, *, endpoint: str | None = None, settings: HubSettings | None = None) -> str:
    """The user name the token belongs to, for :func:`default_repo_name`."""
    settings = settings or HubSettings()
    api = _api(endpoint, settings)
    answer = hub_call("checking the token (whoami)", lambda: api.whoami(token=token), endpoint=api.endpoint,
                      settings=settings, secrets=[token])
    return str(answer["name"])


def ensure_model_card(folder: Path) -> Path:
    """Write the README.md model card from the folder's heretic.json when the folder has none; an existing card is
    never touched.

    A repository without a card shows an empty page and no base model or tags on the Hub. The card is written whole
    or not at all, so an interrupted write never leaves half a card; a folder that cannot be written is a
    StorageError naming it.
    """
    folder = Path(folder)
    card_path = folder / MODEL_CARD_FILE
    if card_path.exists():
        return card_path
    return write_model_card(folder, read_metadata(folder), None)


class _CountingUpload(CommitOperationAdd):
    """A file to commit that reports how far its transfer has read it (huggingface_hub reads it while sending).

    ``as_file(with_tqdm=True)`` is the library's hook for transfer progress; positions (not byte counts) are
    reported, so a retried part never counts twice.
    """

    def __init__(self, path_in_repo: str, local_path: Path, report: Callable[[int], None]) -> None:
        super().__init__(path_in_repo=path_in_repo, path_or_fileobj=str(local_path))
        self._report = report

    @contextmanager
    def as_file(self, with_tqdm: bool = False) -> Iterator[BinaryIO]:
        if not with_tqdm or isinstance(self.path_or_fileobj, (bytes, bytearray)):
            with super().as_file(with_tqdm=False) as file:
                yield file
            return
        with open(self.path_or_fileobj, "rb") as file:  # type: ignore[arg-type]
            plain_read = file.read

            def counted_read(size: int | None = -1) -> bytes:
                data = plain_read(size)
                self._report(file.tell())
                return data

            file.read = counted_read  # type: ignore[method-assign]
            yield file


def _remote_files(api: HfApi, repo: str, paths: list[str], token: str) -> dict[str, RepoFile]:
    entries = api.get_paths_info(repo, paths, token=token)
    return {entry.path: entry for entry in entries if isinstance(entry, RepoFile)}


def _already_uploaded(content: Path | bytes, remote: RepoFile | None) -> bool:
    """Same size and same hash as the file on the Hub, so an interrupted upload resumes instead of starting over."""
    if remote is None:
        return False
    size = len(content) if isinstance(content, bytes) else content.stat().st_size
    if remote.size != size:
        return False
    if remote.lfs is not None:
        with io.BytesIO(content) if isinstance(content, bytes) else open(content, "rb") as handle:
            return sha_fileobj(handle).hex() == remote.lfs.sha256
    return git_hash(content if isinstance(content, bytes) else content.read_bytes()) == remote.blob_id


class _Quiet:
    """The observer of an upload nobody watches: no phases shown, nothing to cancel."""

    def phase(self, name: str, total: int | None = None, description: str = "") -> AbstractContextManager[Any]:
        return nullcontext(lambda completed: None)

    def log(self, message: str) -> None:
        pass

    def check_cancelled(self) -> None:
        pass


def _card_in_memory(folder: Path, files: list[str], observer: UploadObserver) -> bytes | None:
    """A card for a folder without README.md: written into the folder, or sent from memory if it is read-only."""
    if MODEL_CARD_FILE in files:
        return None
    try:
        ensure_model_card(folder)
        return None
    except StorageError as error:
        observer.log(f"the model card could not be written into {folder} ({error}); it is uploaded from memory")
        return model_card_for_folder(folder, read_metadata(folder)).encode("utf-8")


def upload_model_folder(
    folder: Path,
    repo: str,
    *,
    private: bool = True,
    token: str,
    endpoint: str | None = None,
    report: ProgressCallback | None = None,
    on_file: Callable[[FileTransfer], None] | None = None,
    settings: HubSettings | None = None,
    observer: UploadObserver | None = None,
    hint: str = "Then run the same command again: files already on the Hub are not sent again.",
) -> str:
    """Upload a model folder to ``repo`` (created if needed, private by default) and return the repository URL.

    Files already on the Hub with the same content are skipped; every other file is transferred one at a time
    (large files go to LFS/Xet storage first, which the Hub keeps even if the run is interrupted) and all of them
    land in a single commit, so the repository never shows half a model. Each request is bounded in time and
    retried (``settings``); what still fails is a NetworkError paragraph. ``observer`` (a worker's JobContext) gets
    the phases and may cancel between and during transfers; ``on_file`` gets each file's progress; ``hint`` ends
    every failure's paragraph with what to do next.
    """
    settings = settings or HubSettings()
    observer = observer or _Quiet()
    folder = Path(folder).expanduser().resolve()
    validate_repo_name(repo)
    with observer.phase("check", None, f"checking {folder}"):
        files = validate_model_folder(folder)
        card = _card_in_memory(folder, files, observer)
        files = validate_model_folder(folder)  # again: the card just written is one of them
        if card is not None:
            files = sorted([*files, MODEL_CARD_FILE])
    api = _api(endpoint, settings)
    sizes = {name: len(card) if name == MODEL_CARD_FILE and card is not None else (folder / name).stat().st_size
             for name in files}
    total = sum(sizes.values())

    def call(action: str, function: Callable[[], T]) -> T:
        observer.check_cancelled()
        return hub_call(action, function, endpoint=api.endpoint, settings=settings, secrets=[token], repo=repo,
                        hint=hint, on_retry=lambda message: observer.log(f"retrying {message}"))

    with observer.phase("prepare", None, f"creating or opening {repo} on {api.endpoint}"):
        url = call(f"creating the repository {repo}",
                   lambda: api.create_repo(repo, private=private, exist_ok=True, token=token))
        remote = call(f"listing the files already in {repo}", lambda: _remote_files(api, repo, files, token))
    operations: list[CommitOperationAdd] = []
    done = 0
    with observer.phase("upload", len(files), f"sending {len(files)} files ({decimal(total)}) to {repo}") as progress:
        for number, name in enumerate(files, 1):
            local: Path | bytes = card if name == MODEL_CARD_FILE and card is not None else folder / name
            if _already_uploaded(local, remote.get(name)):
                done += sizes[name]
                _tell(on_file, FileTransfer(name, sizes[name], sizes[name], STATE_ON_HUB, done, total))
            else:
                operation = _operation(name, local, sizes[name], done, total, on_file)
                call(f"sending {name}", lambda: api.preupload_lfs_files(repo, [operation], token=token,
                                                                         free_memory=False))
                operations.append(operation)
                done += sizes[name]
                _tell(on_file, FileTransfer(name, sizes[name], sizes[name], STATE_SENT, done, total))
            progress(number)
            if report is not None:
                report(name, done, total)
    with observer.phase("commit", None, f"committing {len(operations)} files to {repo}"):
        if operations:
            _commit(api, repo, operations, folder, token, call)
        else:
            observer.log(f"every file is already in {repo} with the same content; nothing to commit")
    return str(url)


def _operation(name: str, local: Path | bytes, size: int, done_before: int, total: int,
               on_file: Callable[[FileTransfer], None] | None) -> CommitOperationAdd:
    if isinstance(local, bytes):
        return CommitOperationAdd(path_in_repo=name, path_or_fileobj=local)
    last = [0.0]

    def report(position: int) -> None:
        now = time.monotonic()
        if position < size and now - last[0] < _PROGRESS_INTERVAL_SECONDS:
            return
        last[0] = now
        sent = min(position, size)
        _tell(on_file, FileTransfer(name, sent, size, STATE_SENDING, done_before + sent, total))

    _tell(on_file, FileTransfer(name, 0, size, STATE_SENDING, done_before, total))
    return _CountingUpload(name, local, report)


def _tell(on_file: Callable[[FileTransfer], None] | None, transfer: FileTransfer) -> None:
    if on_file is not None:
        on_file(transfer)


def _commit(api: HfApi, repo: str, operations: list[CommitOperationAdd], folder: Path, token: str,
            call: Callable[[str, Callable[[], Any]], Any]) -> None:
    """One commit with every new file. A retried commit first checks whether the last attempt landed after all."""
    names = [operation.path_in_repo for operation in operations]
    attempts = [0]

    def commit() -> Any:
        attempts[0] += 1
        if attempts[0] > 1:
            landed = _remote_files(api, repo, names, token)
            if all(name in landed for name in names) and all(
                    _already_uploaded(_operation_content(operation), landed[operation.path_in_repo])
                    for operation in operations):
                return None
        return api.create_commit(repo, operations, commit_message=f"Upload {folder.name} with heretic-tui",
                                 token=token)

    call(f"committing {len(operations)} files to {repo}", commit)


def _operation_content(operation: CommitOperationAdd) -> Path | bytes:
    content = operation.path_or_fileobj
    return content if isinstance(content, bytes) else Path(str(content))
