"""Ship a model folder (full model or LoRA adapter) to the Hugging Face Hub.

Everything goes through ``huggingface_hub.HfApi`` so authentication, LFS/Xet transfers, retries and the Hub's API
versions stay the library's problem. What this module adds is what a headless tool needs around it: checks that
fail early with a sentence the user can act on, a token that is resolved once and never persisted, a fallback
model card, per-file progress, and resumption (files already on the Hub with the same content are not sent again).

The token is only ever held in local variables and passed to ``HfApi`` calls; it is never put into an event, a
log line, an exception message, a settings object or a file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import huggingface_hub
from huggingface_hub import CommitOperationAdd, HfApi, RepoFile
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils.sha import git_hash, sha_fileobj

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.run_directory import slugify

MODEL_CARD_FILE = "README.md"
METADATA_FILE = "heretic.json"
"""Local provenance written next to exported weights; it holds local paths, so it is not uploaded."""

REPO_SUFFIX = "-heretic"
MAX_REPO_PART_LENGTH = 96
TOKEN_SETTINGS_URL = "https://huggingface.co/settings/tokens"
LOGIN_HELP = (
    f"Log in once with `hf auth login`, or set the HF_TOKEN environment variable to a token with write access "
    f"(create one at {TOKEN_SETTINGS_URL})."
)

_REPO_PART = re.compile(r"[A-Za-z0-9_.-]+")
_NOT_WEIGHTS = {"training_args.bin", "optimizer.bin", "scheduler.bin", "rng_state.bin"}

ProgressCallback = Callable[[str, int, int], None]
"""``report(path_in_repo, bytes_done, bytes_total)``, called once per file after it is on the Hub."""


@contextmanager
def _hub_errors(endpoint: str, repo: str | None) -> Iterator[None]:
    """Turn the Hub's refusals into :class:`UserInputError` sentences; the token is never part of the message."""
    try:
        yield
    except OfflineModeIsEnabled:
        raise UserInputError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded. Unset it (or set HF_HUB_OFFLINE=0) and retry."
        ) from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise UserInputError(
                f"The Hugging Face Hub at {endpoint} rejected the token (HTTP 401): it is invalid or expired. "
                f"{LOGIN_HELP}"
            ) from None
        if status == 403:
            target = f"repository {repo}" if repo else "that account"
            owner = repo.split("/")[0] if repo else "that namespace"
            raise UserInputError(
                f"The token may not write to {target} (HTTP 403). Use a token with write access to '{owner}' "
                f"(a fine-grained token needs 'write' on that namespace; see {TOKEN_SETTINGS_URL}), or pick a "
                "repository under your own user name."
            ) from None
        raise


def _api(endpoint: str | None) -> HfApi:
    """A client without a stored token: the token is passed per call, so this object never holds it."""
    return HfApi(endpoint=endpoint, library_name="heretic-tui")


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
    for path in folder.rglob("*"):
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
        except (OSError, ValueError, AttributeError):
            raise UserInputError(
                f"{folder / index_name} is not a valid shard index (JSON with a weight_map). Export the model again."
            ) from None
        prefix = str(Path(index_name).parent.as_posix()) + "/" if "/" in index_name else ""
        missing = sorted({prefix + shard for shard in weight_map.values()} - present)
        if missing:
            raise UserInputError(
                f"{folder} is missing {len(missing)} weight shard(s) listed in {index_name}, first {missing[0]}. "
                "The export was probably interrupted: export the model again."
            )


def validate_repo_name(name: str) -> str:
    """Check a repository id against the Hub's rules and return it; the error says which rule it breaks."""
    parts = name.split("/")
    if len(parts) != 2 or not all(parts):
        raise UserInputError(
            f"Repository name {name!r} must look like 'owner/model-name' (your user or organisation name, a slash, "
            "then the model name), e.g. 'alice/qwen2.5-0.5b-instruct-heretic'."
        )
    for part in parts:
        problem = None
        if not _REPO_PART.fullmatch(part):
            problem = "may only contain letters, digits, '-', '_' and '.'"
        elif part[0] in "-." or part[-1] in "-.":
            problem = "may not start or end with '-' or '.'"
        elif "--" in part or ".." in part:
            problem = "may not contain '--' or '..'"
        elif len(part) > MAX_REPO_PART_LENGTH:
            problem = f"is {len(part)} characters long; at most {MAX_REPO_PART_LENGTH} are allowed"
        if problem:
            raise UserInputError(f"Repository name {name!r} is not valid: {part!r} {problem}. Choose another name.")
    return name


def default_repo_name(user: str, folder: Path) -> str:
    """``<user>/<model>-heretic`` from the model folder's name, so the suggested name says where it came from."""
    model = slugify(Path(folder).name)
    model = re.sub(r"[^a-z0-9_.-]+", "-", model)
    model = re.sub(r"([-.])[-.]+", r"\1", model).strip("-.") or "model"
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


def hub_user_name(token: str, *, endpoint: str | None = None) -> str:
    """The user name the token belongs to, for :func:`default_repo_name`."""
    api = _api(endpoint)
    with _hub_errors(api.endpoint, None):
        return str(api.whoami(token=token)["name"])


def ensure_model_card(folder: Path) -> Path:
    """Write the README.md model card from the folder's heretic.json when the folder has none; an existing card is
    never touched.

    A repository without a card shows an empty page and no base model or tags on the Hub. The card is written to a
    temporary file and renamed (see :func:`heretic_tui.core.shipping.model_card.write_model_card`), so an interrupted write never leaves
    half a card.
    """
    from heretic_tui.core.shipping.model_card import read_metadata, write_model_card

    folder = Path(folder)
    card_path = folder / MODEL_CARD_FILE
    if card_path.exists():
        return card_path
    try:
        return write_model_card(folder, read_metadata(folder), None)
    except OSError as error:
        raise UserInputError(
            f"Could not write a model card into {folder} ({error.strerror or error}). Make the folder writable, "
            "or add a README.md yourself."
        ) from None


def _remote_files(api: HfApi, repo: str, paths: list[str], token: str) -> dict[str, RepoFile]:
    entries = api.get_paths_info(repo, paths, token=token)
    return {entry.path: entry for entry in entries if isinstance(entry, RepoFile)}


def _already_uploaded(local: Path, remote: RepoFile | None) -> bool:
    """Same size and same hash as the file on the Hub, so an interrupted upload resumes instead of starting over."""
    if remote is None or remote.size != local.stat().st_size:
        return False
    if remote.lfs is not None:
        with open(local, "rb") as handle:
            return sha_fileobj(handle).hex() == remote.lfs.sha256
    return git_hash(local.read_bytes()) == remote.blob_id


def upload_model_folder(
    folder: Path,
    repo: str,
    *,
    private: bool = True,
    token: str,
    endpoint: str | None = None,
    report: ProgressCallback | None = None,
) -> str:
    """Upload a model folder to ``repo`` (created if needed, private by default) and return the repository URL.

    Files already on the Hub with the same content are skipped; every other file is transferred one at a time
    (large files go to LFS/Xet storage first, which the Hub keeps even if the run is interrupted) and all of them
    land in a single commit, so the repository never shows half a model.
    """
    folder = Path(folder).expanduser().resolve()
    validate_repo_name(repo)
    validate_model_folder(folder)
    ensure_model_card(folder)
    files = validate_model_folder(folder)
    api = _api(endpoint)
    sizes = {name: (folder / name).stat().st_size for name in files}
    total = sum(sizes.values())
    done = 0
    with _hub_errors(api.endpoint, repo):
        url = api.create_repo(repo, private=private, exist_ok=True, token=token)
        remote = _remote_files(api, repo, files, token)
        operations = []
        for name in files:
            if not _already_uploaded(folder / name, remote.get(name)):
                operation = CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                api.preupload_lfs_files(repo, [operation], token=token, free_memory=False)
                operations.append(operation)
            done += sizes[name]
            if report is not None:
                report(name, done, total)
        if operations:
            api.create_commit(
                repo,
                operations,
                commit_message=f"Upload {folder.name} with heretic-tui",
                token=token,
            )
    return str(url)
