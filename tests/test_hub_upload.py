"""Uploads against a fake Hub on 127.0.0.1 that speaks exactly the calls huggingface_hub 2.x makes for an upload.

The fake implements: ``GET /api/whoami-v2``, ``POST /api/repos/create``, ``POST /api/validate-yaml``,
``POST /api/models/{repo}/paths-info/{revision}``, ``POST /api/models/{repo}/preupload/{revision}``, the LFS batch
endpoint ``POST /{repo}.git/info/lfs/objects/batch`` with a basic-transfer ``PUT`` to its own storage URL, and
``POST /api/models/{repo}/commit/{revision}`` (NDJSON with base64 regular files and LFS pointers). Xet transfers are
switched off so large files take the LFS path the fake can check; ``*.safetensors`` go through LFS as on the Hub.
"""

from __future__ import annotations

import base64
import builtins
import getpass
import hashlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import torch
from huggingface_hub import ModelCard, constants
from huggingface_hub.utils.sha import git_hash
from safetensors.torch import save_file

from heretic_tui.core.errors import EXIT_NETWORK, NetworkError, UserInputError
from heretic_tui.core.shipping.hub import (
    STATE_ON_HUB,
    STATE_SENDING,
    STATE_SENT,
    FileTransfer,
    default_repo_name,
    ensure_model_card,
    hub_user_name,
    resolve_token,
    upload_model_folder,
    validate_model_folder,
    validate_repo_name,
)

TOKEN = "hf_SecretTestToken_4f9c2a7e1b"
USER = "alice"


@dataclass
class FakeRepo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)


@dataclass
class FakeHubState:
    """What the fake Hub received, for the assertions."""

    base_url: str = ""
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    lfs_storage: dict[str, bytes] = field(default_factory=dict)
    create_payloads: list[dict[str, Any]] = field(default_factory=list)
    commits: list[dict[str, Any]] = field(default_factory=list)
    lfs_puts: list[str] = field(default_factory=list)
    unauthorised: list[str] = field(default_factory=list)
    api_calls: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    """Request kind ('create', 'commit', 'lfs-put', ...) -> HTTP status it gets instead of an answer."""
    hang: set[str] = field(default_factory=set)
    """Request kinds that are accepted and never answered (until ``release`` is set)."""
    release: threading.Event = field(default_factory=threading.Event)
    arrived: dict[str, threading.Event] = field(default_factory=dict)

    def reached(self, kind: str) -> threading.Event:
        return self.arrived.setdefault(kind, threading.Event())


def _remote_oid(repo: FakeRepo, path: str) -> str:
    content = repo.files[path]
    return hashlib.sha256(content).hexdigest() if path in repo.lfs_paths else git_hash(content)


class FakeHubHandler(BaseHTTPRequestHandler):
    state: FakeHubState

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _intercepted(self, kind: str) -> bool:
        """Answer with a configured failure, or hang, instead of handling the request; True when it did."""
        self.state.reached(kind).set()
        if kind in self.state.hang:
            self.state.release.wait(60)
            return True
        status = self.state.failures.get(kind)
        if status is not None:
            echoed = "; ".join(f"{name}: {value}" for name, value in self.headers.items())
            self._send(status, {"error": f"the fake Hub fails '{kind}' with HTTP {status}; you sent {echoed}"})
            return True
        return False

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self.state.unauthorised.append(self.path)
        self._send(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def _repo(self, repo_id: str) -> FakeRepo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"})
        return repo

    def do_GET(self) -> None:
        self.state.api_calls.append(f"GET {self.path}")
        if self.path == "/api/whoami-v2" and self._authorised():
            self._send(200, {"type": "user", "name": USER})
        elif self.path != "/api/whoami-v2":
            self._send(404, {"error": "not found"})

    def do_PUT(self) -> None:
        self.state.api_calls.append(f"PUT {self.path}")
        oid = self.path.removeprefix("/lfs-storage/")
        body = self._body()
        if self._intercepted("lfs-put"):
            return
        assert hashlib.sha256(body).hexdigest() == oid, "LFS upload content does not match its oid"
        self.state.lfs_storage[oid] = body
        self.state.lfs_puts.append(oid)
        self._send(200, {})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        self.state.api_calls.append(f"POST {path}")
        body = self._body()
        if not self._authorised():
            return
        parts = path.strip("/").split("/")
        kind = ("create" if path == "/api/repos/create" else "lfs-batch" if path.endswith("/objects/batch")
                else parts[4] if len(parts) == 6 else "other")
        if self._intercepted(kind):
            return
        if path == "/api/repos/create":
            self._create_repo(json.loads(body))
        elif path == "/api/validate-yaml":
            self._send(200, {"errors": [], "warnings": []})
        elif path.endswith(".git/info/lfs/objects/batch"):
            self._lfs_batch(json.loads(body))
        elif len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "paths-info":
            self._paths_info(f"{parts[2]}/{parts[3]}", parse_qs(body.decode()).get("paths", []))
        elif len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
            self._preupload(f"{parts[2]}/{parts[3]}", json.loads(body))
        elif len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
            self._commit(f"{parts[2]}/{parts[3]}", body)
        else:
            self._send(404, {"error": f"unknown endpoint {path}"})

    def _create_repo(self, payload: dict[str, Any]) -> None:
        self.state.create_payloads.append(payload)
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.state.base_url}/{repo_id}"
        if repo_id in self.state.repos:
            self._send(409, {"error": "You already created this model repo", "url": url})
            return
        self.state.repos[repo_id] = FakeRepo(private=payload.get("visibility") != "public")
        self._send(200, {"url": url, "name": repo_id})

    def _paths_info(self, repo_id: str, paths: list[str]) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        entries = []
        for path in paths:
            if path not in repo.files:
                continue
            content = repo.files[path]
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(content), "oid": git_hash(content)}
            if path in repo.lfs_paths:
                entry["oid"] = hashlib.sha1(content).hexdigest()
                entry["lfs"] = {"size": len(content), "oid": hashlib.sha256(content).hexdigest(), "pointerSize": 134}
            entries.append(entry)
        self._send(200, entries)

    def _preupload(self, repo_id: str, payload: dict[str, Any]) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        files = []
        for item in payload["files"]:
            path = item["path"]
            assert len(base64.b64decode(item["sample"])) <= 512
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if path.endswith(".safetensors") else "regular",
                    "shouldIgnore": False,
                    "oid": _remote_oid(repo, path) if path in repo.files else None,
                }
            )
        self._send(200, {"files": files, "commitOid": "0" * 40})

    def _lfs_batch(self, payload: dict[str, Any]) -> None:
        assert payload["operation"] == "upload"
        objects = []
        for item in payload["objects"]:
            entry: dict[str, Any] = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.state.lfs_storage:
                entry["actions"] = {"upload": {"href": f"{self.state.base_url}/lfs-storage/{item['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def _commit(self, repo_id: str, body: bytes) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]
        assert header["key"] == "header"
        committed = []
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                repo.files[value["path"]] = base64.b64decode(value["content"])
                repo.lfs_paths.discard(value["path"])
            elif line["key"] == "lfsFile":
                repo.files[value["path"]] = self.state.lfs_storage[value["oid"]]
                repo.lfs_paths.add(value["path"])
            committed.append(value["path"])
        self.state.commits.append({"repo": repo_id, "summary": header["value"]["summary"], "files": committed})
        self._send(200, {"commitUrl": f"{self.state.base_url}/{repo_id}/commit/{'a' * 40}", "commitOid": "a" * 40})


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHubState]:
    """The fake Hub, also as the default endpoint: huggingface_hub fetches side data (its agent registry) there."""
    state = FakeHubState()
    handler = type("BoundFakeHubHandler", (FakeHubHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", state.base_url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def hub_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No real token, login or network: an empty HF_HOME, offline mode off, Xet off (the fake speaks LFS)."""
    home = tmp_path / "hf-home"
    home.mkdir()
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    monkeypatch.setattr(constants, "HF_DEBUG", True)
    real_getaddrinfo = socket.getaddrinfo
    outside: list[str] = []

    def local_only(host: str, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost"):
            outside.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is outside the test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)

    def no_prompt(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the upload must never prompt")

    monkeypatch.setattr(builtins, "input", no_prompt)
    monkeypatch.setattr(getpass, "getpass", no_prompt)

    yield home
    assert outside == [], "only the fake Hub on 127.0.0.1 may be contacted"


def make_model_folder(root: Path, name: str = "Tiny-Model") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}), encoding="utf-8")
    save_file({"weight": torch.arange(16, dtype=torch.float32).reshape(4, 4)}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}), encoding="utf-8")
    (folder / ".config.json.tmp-123").write_text("leftover of an atomic write", encoding="utf-8")
    metadata = {
        "source_model": "Qwen/Qwen2.5-0.5B-Instruct",
        "run_dir": str(root),
        "trial": 12,
        "method": "abliteration",
    }
    (folder / "heretic.json").write_text(json.dumps(metadata), encoding="utf-8")
    return folder


def files_containing(root: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_upload_sends_the_files_privately_and_never_stores_the_token(
    fake_hub: FakeHubState,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    folder = make_model_folder(tmp_path / "models")
    reports: list[tuple[str, int, int]] = []
    transfers: list[FileTransfer] = []

    url = upload_model_folder(
        folder, f"{USER}/tiny-model-heretic", token=resolve_token(TOKEN), endpoint=fake_hub.base_url,
        report=lambda path, done, total: reports.append((path, done, total)), on_file=transfers.append,
    )

    assert url == f"{fake_hub.base_url}/{USER}/tiny-model-heretic"
    assert fake_hub.create_payloads == [{"name": "tiny-model-heretic", "organization": USER, "visibility": "private"}]
    repo = fake_hub.repos[f"{USER}/tiny-model-heretic"]
    assert repo.private
    expected = ["README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert sorted(repo.files) == expected
    for name in expected:
        assert repo.files[name] == (folder / name).read_bytes(), name
    assert repo.lfs_paths == {"model.safetensors"}
    assert fake_hub.lfs_puts == [hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()]
    assert len(fake_hub.commits) == 1 and sorted(fake_hub.commits[0]["files"]) == expected
    card = ModelCard(repo.files["README.md"].decode())
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B-Instruct" and "heretic" in card.data.tags
    assert str(tmp_path) not in str(card), "the card must not leak local paths"
    sizes = {name: (folder / name).stat().st_size for name in expected}
    total = sum(sizes.values())
    assert [path for path, _, _ in reports] == expected
    assert reports[-1][1:] == (total, total)
    finished = [transfer for transfer in transfers if transfer.state == STATE_SENT]
    assert [(item.path, item.done, item.size) for item in finished] == [(name, sizes[name], sizes[name])
                                                                          for name in expected]
    assert [item.total_done for item in finished] == [sum(sizes[name] for name in expected[:count])
                                                      for count in range(1, len(expected) + 1)]
    weights = [item for item in transfers if item.path == "model.safetensors"]
    assert weights[0].state == STATE_SENDING and weights[0].done == 0, "a file announces itself before it is sent"
    assert [item.done for item in weights if item.state == STATE_SENDING][-1] == sizes["model.safetensors"], \
        "the transfer reported reading the whole file"
    assert not fake_hub.unauthorised

    assert "authenticated: True" in caplog.text and "<TOKEN>" in caplog.text, "huggingface_hub debug logs captured"
    assert TOKEN not in caplog.text
    captured = capfd.readouterr()
    assert TOKEN not in captured.out and TOKEN not in captured.err
    assert files_containing(tmp_path, TOKEN) == []


def test_public_upload_and_resume_skip_unchanged_files(fake_hub: FakeHubState, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path)
    repo_id = f"{USER}/tiny-public"
    upload_model_folder(folder, repo_id, private=False, token=TOKEN, endpoint=fake_hub.base_url)
    assert fake_hub.create_payloads[0]["visibility"] == "public"
    assert not fake_hub.repos[repo_id].private

    transfers: list[FileTransfer] = []
    upload_model_folder(folder, repo_id, private=False, token=TOKEN, endpoint=fake_hub.base_url,
                        on_file=transfers.append)
    assert len(fake_hub.commits) == 1, "nothing changed, so nothing is committed again"
    assert len(fake_hub.lfs_puts) == 1, "the weights were not sent again"
    assert {transfer.state for transfer in transfers} == {STATE_ON_HUB}, "every file was recognised as on the Hub"

    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 16}), encoding="utf-8")
    upload_model_folder(folder, repo_id, private=False, token=TOKEN, endpoint=fake_hub.base_url)
    assert fake_hub.commits[-1]["files"] == ["config.json"]
    assert fake_hub.repos[repo_id].files["config.json"] == (folder / "config.json").read_bytes()


def test_existing_model_card_is_kept(fake_hub: FakeHubState, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# My own card\n", encoding="utf-8")
    upload_model_folder(folder, f"{USER}/own-card", token=TOKEN, endpoint=fake_hub.base_url)
    assert fake_hub.repos[f"{USER}/own-card"].files["README.md"].startswith(b"---\nlicense: mit")


def test_generated_card_is_written_once_and_atomically(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path)
    card = ensure_model_card(folder)
    first = card.read_text(encoding="utf-8")
    assert ModelCard(first).data.library_name == "transformers"
    assert "trial 12" in first
    card.write_text("edited", encoding="utf-8")
    ensure_model_card(folder)
    assert card.read_text(encoding="utf-8") == "edited"
    assert not [path for path in folder.iterdir() if path.name.startswith(".README")]


def test_rejected_token_is_a_network_error_that_says_how_to_fix_it(fake_hub: FakeHubState, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path)
    wrong = "hf_WrongToken_0000000000"
    with pytest.raises(NetworkError, match="rejected the token") as caught:
        upload_model_folder(folder, f"{USER}/tiny", token=wrong, endpoint=fake_hub.base_url)
    assert caught.value.exit_code == EXIT_NETWORK
    message = str(caught.value)
    assert wrong not in message and "\n" not in message
    assert "HTTP 401" in message and f"{fake_hub.base_url}/api/repos/create" in message and "hf auth login" in message
    assert not fake_hub.repos


def test_hub_user_name(fake_hub: FakeHubState) -> None:
    assert hub_user_name(TOKEN, endpoint=fake_hub.base_url) == USER


def test_validate_model_folder_lists_the_files(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path)
    expected = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert validate_model_folder(folder) == expected, "hidden files and the local heretic.json are left out"


def test_adapter_folder_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    save_file({"lora_A": torch.zeros(2, 2)}, str(folder / "adapter_model.safetensors"))
    assert validate_model_folder(folder) == ["adapter_config.json", "adapter_model.safetensors"]
    assert ModelCard(ensure_model_card(folder).read_text(encoding="utf-8")).data.library_name == "peft"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config.json": "{}", "tokenizer.json": "{}", "training_args.bin": "x"}, "without weights"),
        ({"model.safetensors": "x"}, "no config.json"),
        ({"adapter_config.json": "{}"}, "adapter folder without weights"),
        (
            {
                "config.json": "{}",
                "model-00001-of-00002.safetensors": "x",
                "model.safetensors.index.json": json.dumps(
                    {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
                ),
            },
            "missing 1 weight shard",
        ),
    ],
)
def test_bad_model_folders_are_clear_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    with pytest.raises(UserInputError, match=message) as caught:
        validate_model_folder(folder)
    assert str(folder) in str(caught.value)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not a folder"):
        validate_model_folder(tmp_path / "nowhere")


def test_upload_of_folder_without_weights_sends_nothing(fake_hub: FakeHubState, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserInputError, match="without weights"):
        upload_model_folder(folder, f"{USER}/empty", token=TOKEN, endpoint=fake_hub.base_url)
    assert fake_hub.api_calls == []
    assert not (folder / "README.md").exists()


@pytest.mark.parametrize(
    "name",
    ["no-slash", "a/b/c", "/model", "alice/", "alice/-model", "alice/model.", "alice/mo del", "alice/mo--del",
     "alice/" + "x" * 97, "ali$ce/model"],
)
def test_invalid_repo_names_are_clear_errors(name: str) -> None:
    with pytest.raises(UserInputError, match="Repository name"):
        validate_repo_name(name)


def test_invalid_repo_name_fails_before_any_request(fake_hub: FakeHubState, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path)
    with pytest.raises(UserInputError, match="owner/model-name"):
        upload_model_folder(folder, "just-a-name", token=TOKEN, endpoint=fake_hub.base_url)
    assert fake_hub.api_calls == []


def test_valid_repo_names() -> None:
    for name in ["alice/model", "my-org/Qwen2.5-0.5B_instruct", "a/" + "x" * 96]:
        assert validate_repo_name(name) == name


def test_default_repo_name() -> None:
    assert default_repo_name(USER, Path("/x/Qwen2.5-0.5B-Instruct")) == f"{USER}/qwen2.5-0.5b-instruct-heretic"
    assert default_repo_name(USER, Path("/x/tiny-heretic")) == f"{USER}/tiny-heretic"
    assert default_repo_name(USER, Path("/x/--weird  name!!")) == f"{USER}/weird-name-heretic"
    long_name = default_repo_name(USER, Path("/x/" + "m" * 200))
    assert validate_repo_name(long_name) == long_name


def test_missing_token_says_how_to_log_in() -> None:
    with pytest.raises(UserInputError) as caught:
        resolve_token(None)
    assert "hf auth login" in str(caught.value) and "HF_TOKEN" in str(caught.value)
    with pytest.raises(UserInputError):
        resolve_token("   ")


def test_token_precedence(monkeypatch: pytest.MonkeyPatch, hub_environment: Path) -> None:
    (hub_environment / "token").write_text("hf_FromCachedLogin", encoding="utf-8")
    assert resolve_token(None) == "hf_FromCachedLogin"
    monkeypatch.setenv("HF_TOKEN", "hf_FromEnvironment")
    assert resolve_token(None) == "hf_FromEnvironment"
    assert resolve_token(" hf_Typed ") == "hf_Typed"


NETWORK_SETTINGS = ["--set", "hub.connect_timeout=0.5", "--set", "hub.read_timeout=0.5",
                    "--set", "hub.request_retries=1", "--set", "hub.retry_wait=0.1"]
"""Short waits and one retry, so a Hub that never answers fails in about a second."""


def free_port() -> int:
    """A local port nothing listens on (bound once and closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A server that accepts connections (the kernel's backlog does) and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def run_upload_cli(arguments: list[str], capture: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    import io

    from heretic_tui.cli.main import main

    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    with pytest.raises(SystemExit) as caught:
        main(["upload", *arguments, "--headless", "--token-stdin"])
    captured = capture.readouterr()
    return int(caught.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("refused", r"refused the connection \(POST http://127\.0\.0\.1:\d+/api/repos/create, 2 attempts\)"),
        ("silent", r"accepted the connection but did not answer within 0\.5 s \(POST .*/api/repos/create"),
        ("dns", r"host name hub\.invalid .* could not be resolved \(DNS failure, 2 attempts\)"),
        ("400", r"refused the request \(HTTP 400 at POST .*/api/repos/create\)"),
        ("401", r"rejected the token \(HTTP 401 at POST .*/api/repos/create\).*hf auth login"),
        ("500", r"failed on its side \(HTTP 500 at POST .*/api/repos/create, 2 attempts\).*--resume --run-dir"),
    ],
)
def test_every_hub_failure_is_one_paragraph_exit_4_and_no_token_anywhere(
    case: str, expected: str, fake_hub: FakeHubState, silent_hub: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    """The upload worker meets each failure at its first request; every copy of the token is in the request."""
    from heretic_tui.core.errors import EXIT_NETWORK
    from heretic_tui.core.runs.events import JobError
    from heretic_tui.core.runs.run_directory import RunDirectory

    endpoints = {"refused": f"http://127.0.0.1:{free_port()}", "silent": silent_hub, "dns": "http://hub.invalid"}
    if case in endpoints:
        monkeypatch.setattr(constants, "ENDPOINT", endpoints[case])
    else:
        fake_hub.failures["create"] = int(case)
    folder = make_model_folder(tmp_path / "models")
    run_dir = tmp_path / "upload-run"
    code, out, err = run_upload_cli([str(folder), "--repo", f"{USER}/tiny", "--run-dir", str(run_dir),
                                     *NETWORK_SETTINGS], capfd, monkeypatch)

    assert code == EXIT_NETWORK, err
    errors = [line for line in err.splitlines() if "error: " in line]
    assert len(errors) == 1 and re.search(expected, errors[0]), err
    assert "Traceback" not in err and out == ""
    final = RunDirectory(run_dir).read_events()[-1]
    assert isinstance(final, JobError) and final.exit_code == EXIT_NETWORK and final.traceback == ""
    assert "\n" not in final.message and re.search(expected, final.message), final.message
    log = (run_dir / "worker.log").read_text(encoding="utf-8")
    assert "Traceback" not in log, log
    assert TOKEN not in out + err
    assert files_containing(tmp_path, TOKEN) == [], "not in events.jsonl, worker.log, job.json or anywhere else"
    assert "hf_SecretTestToken" not in final.message
    if case in ("400", "401", "500"):
        assert fake_hub.reached("create").is_set(), "the fake Hub saw the request it echoed"


def test_whoami_failure_before_the_job_is_exit_4_and_creates_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    """Without --repo the command asks the Hub for the user name first, in the command's own process."""
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    folder = make_model_folder(tmp_path / "models")
    code, out, err = run_upload_cli([str(folder), *NETWORK_SETTINGS], capfd, monkeypatch)
    assert code == 4 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "whoami" in err and "refused the connection" in err and TOKEN not in out + err
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "heretic-tui" / "runs").exists()


def test_ctrl_c_while_the_command_waits_for_the_hub_is_a_clean_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    """The user-name lookup (no --repo) hangs on a Hub that never answers; Ctrl-C ends the command with 130."""
    import signal

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[socket.socket] = []

    def accept_then_interrupt() -> None:
        connection, _ = listener.accept()
        accepted.append(connection)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=accept_then_interrupt, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    folder = make_model_folder(tmp_path / "models")
    try:
        code, out, err = run_upload_cli([str(folder)], capfd, monkeypatch)
    finally:
        for connection in accepted:
            connection.close()
        listener.close()
    assert code == 130 and accepted, err
    assert "cancelled before the upload started" in err and "Traceback" not in err and TOKEN not in out + err



def test_a_read_only_folder_still_gets_its_model_card_on_the_hub(
    fake_hub: FakeHubState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The card cannot be written into the folder (a read-only mount of a model): it is sent from memory."""
    from heretic_tui.core.errors import StorageError
    from heretic_tui.core.shipping import hub

    def read_only(folder: Path, *arguments: Any, **options: Any) -> Path:
        raise StorageError(f"Could not write {folder}: the file system is read-only.")

    monkeypatch.setattr(hub, "write_model_card", read_only)
    folder = make_model_folder(tmp_path)
    upload_model_folder(folder, f"{USER}/read-only", token=TOKEN, endpoint=fake_hub.base_url)
    assert not (folder / "README.md").exists()
    sent = fake_hub.repos[f"{USER}/read-only"].files["README.md"].decode()
    assert ModelCard(sent).data.base_model == "Qwen/Qwen2.5-0.5B-Instruct" and "trial 12" in sent
