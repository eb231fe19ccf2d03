"""Reading training data: every supported format is detected, unreadable files are skipped by name, and each bad
input is one clear error that names the file (and line) and the fix."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from heretic_tui.core.errors import NetworkError, UserInputError
from heretic_tui.core.settings import HubSettings
from heretic_tui.core.finetuning.sources import KIND_CHAT, KIND_INSTRUCTION, read_sources
from finetune_helpers import FACTS, chat_rows, write_jsonl, write_pdf


def test_a_mixed_folder_is_read_recursively_with_formats_detected(documents: Path) -> None:
    (documents / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in chat_rows()), encoding="utf-8")
    (documents / "image.png").write_bytes(b"\x89PNG")
    data = read_sources([str(documents)])
    formats = {Path(report.source).name: report.format for report in data.reports}
    assert formats == {"zorbia.txt": "text", "quellton.md": "markdown", "lumen.pdf": "pdf",
                       "chat.jsonl": "jsonl chat"}
    assert len(data.documents) == 3
    assert len(data.conversations) == len(chat_rows())
    assert data.ignored == [str(documents / "image.png")]
    pdf_text = next(document.text for document in data.documents if document.origin.endswith(".pdf"))
    assert FACTS[0] in pdf_text and FACTS[-1] in pdf_text


def test_unreadable_pdfs_are_skipped_by_name_when_something_is_left(tmp_path: Path) -> None:
    write_pdf(tmp_path / "good.pdf", FACTS)
    write_pdf(tmp_path / "locked.pdf", FACTS, password="secret")
    write_pdf(tmp_path / "scan.pdf", [])
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    data = read_sources([str(tmp_path)])
    assert [Path(document.origin).name for document in data.documents] == ["good.pdf"]
    reasons = {Path(path).name: reason for path, reason in data.skipped}
    assert set(reasons) == {"locked.pdf", "scan.pdf", "broken.pdf"}
    assert "encrypted" in reasons["locked.pdf"]
    assert "no text layer" in reasons["scan.pdf"] and "OCR" in reasons["scan.pdf"]
    assert "corrupt" in reasons["broken.pdf"]


def test_only_unreadable_pdfs_is_an_error_naming_each_file_and_the_fix(tmp_path: Path) -> None:
    write_pdf(tmp_path / "locked.pdf", FACTS, password="secret")
    write_pdf(tmp_path / "scan.pdf", [])
    with pytest.raises(UserInputError) as raised:
        read_sources([str(tmp_path)])
    message = str(raised.value)
    assert "locked.pdf: encrypted" in message and "scan.pdf: has no text layer" in message
    assert "decrypt" in message and "OCR" in message


def test_an_empty_folder_is_an_error_naming_the_folder_and_the_formats(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(UserInputError) as raised:
        read_sources([str(folder)])
    message = str(raised.value)
    assert str(folder) in message and "no files at all" in message
    assert ".pdf" in message and ".jsonl" in message


def test_a_folder_of_unsupported_files_names_their_extensions(tmp_path: Path) -> None:
    (tmp_path / "report.docx").write_bytes(b"PK")
    with pytest.raises(UserInputError, match=r"only files with other extensions \(\.docx\)"):
        read_sources([str(tmp_path)])


def test_a_missing_path_and_no_data_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        read_sources([str(tmp_path / "nowhere")])
    with pytest.raises(UserInputError, match="--data PATH"):
        read_sources([])


def test_jsonl_with_a_wrong_schema_names_the_file_and_line(tmp_path: Path) -> None:
    rows = chat_rows()[:2] + [{"instruction": "What is the capital?", "output": "Quellton."}]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(UserInputError) as raised:
        read_sources([str(path)])
    message = str(raised.value)
    assert f"{path} line 3" in message
    assert "'messages'" in message and "Fix line 3" in message


def test_jsonl_that_is_not_json_on_a_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(chat_rows()[0]) + "\n\n{not json}\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"line 3 is not valid JSON"):
        read_sources([str(path)])


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role 'wizard'"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
        ({"messages": []}, "non-empty list"),
        ({"prompt": "x", "answer": "y"}, "not training data heretic-tui knows"),
    ],
)
def test_bad_rows_explain_what_is_wrong(tmp_path: Path, row: dict, problem: str) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [row])
    with pytest.raises(UserInputError, match=problem):
        read_sources([str(path)])


def test_instruction_text_and_sharegpt_rows_are_detected(tmp_path: Path) -> None:
    instructions = write_jsonl(tmp_path / "instructions.jsonl", [
        {"instruction": "Name the capital.", "input": "Zorbia", "output": "Quellton."},
        {"instruction": "", "output": "skipped: nothing was asked"},
    ])
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps([{"text": FACTS[0]}, {"text": FACTS[1]}]), encoding="utf-8")
    sharegpt = write_jsonl(tmp_path / "sharegpt.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    ])
    data = read_sources([str(instructions), str(texts), str(sharegpt)])
    assert [report.format for report in data.reports] == ["jsonl instruction", "json text rows", "jsonl chat"]
    instruction, conversation = data.conversations
    assert instruction.kind == KIND_INSTRUCTION
    assert instruction.as_messages() == [{"role": "user", "content": "Name the capital.\n\nZorbia"},
                                         {"role": "assistant", "content": "Quellton."}]
    assert conversation.kind == KIND_CHAT and conversation.messages == (("user", "Hi"), ("assistant", "Hello"))
    assert [document.text for document in data.documents] == FACTS[:2]


def test_an_unsupported_file_given_directly_says_how_to_convert_it(tmp_path: Path) -> None:
    path = tmp_path / "book.epub"
    path.write_bytes(b"epub")
    with pytest.raises(UserInputError, match=r"extension '\.epub'.*Convert it"):
        read_sources([str(path)])


def test_a_hub_dataset_offline_points_at_local_files() -> None:
    with pytest.raises(UserInputError) as raised:
        read_sources(["hf:nobody/no-such-dataset@train#text"])
    message = str(raised.value)
    assert "nobody/no-such-dataset" in message and "local .jsonl file" in message


@pytest.fixture
def online_hub(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Let huggingface_hub talk to ``endpoint`` (the suite runs offline): the Hub lookup is what is tested."""
    from huggingface_hub import constants

    def point_at(endpoint: str) -> None:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)

    return point_at


def test_a_hub_that_refuses_connections_is_a_network_error(online_hub: Callable[[str], None]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    online_hub(f"http://127.0.0.1:{port}")
    with pytest.raises(NetworkError) as raised:
        read_sources(["hf:someone/facts@train#text"], hub=HubSettings(request_retries=0, connect_timeout=2))
    message = str(raised.value)
    assert f"http://127.0.0.1:{port} refused the connection" in message
    assert "looking up the training dataset someone/facts" in message and "local .jsonl file" in message
    assert NetworkError.exit_code == 4


def test_a_dataset_the_hub_does_not_know_is_bad_input(online_hub: Callable[[str], None]) -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *arguments: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        online_hub(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(UserInputError) as raised:
            read_sources(["hf:someone/no-such-facts@train#text"], hub=HubSettings(request_retries=0))
    finally:
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert "The Hugging Face dataset 'someone/no-such-facts' given as training data was not found on " in message
    assert "hf:owner/name@split#column" in message and not isinstance(raised.value, NetworkError)
