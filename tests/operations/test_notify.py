"""Notify: a command and a URL told when a run ends, with the run, its result line and its path; never fatal."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from heretic_tui.core.operations.notify import RunEnd, notify_run_end
from heretic_tui.core.runs.lifecycle import start_job
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import NotifySettings, Settings

RECORDER = """
import json, os, sys
with open(sys.argv[1], "w") as handle:
    json.dump({"stdin": sys.stdin.read(), **{key: value for key, value in os.environ.items()
                                             if key.startswith("HERETIC_RUN_")}}, handle)
"""


def recorder_command(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    output = tmp_path / "notified.json"
    return shlex.join([sys.executable, str(script), str(output)]), output


class Posts:
    """A local HTTP endpoint standing in for ntfy: it keeps every POST's headers and body."""

    def __init__(self, status: int = 200) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                received.append((dict(self.headers), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *arguments: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/my-topic"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def posts() -> object:
    endpoint = Posts()
    yield endpoint
    endpoint.close()


def test_a_failed_detached_job_runs_the_command_with_its_result(tmp_path: Path) -> None:
    command, output = recorder_command(tmp_path)
    settings = Settings()
    settings.output.runs_directory = str(tmp_path / "runs")
    settings.notify.notify_command = command
    run = RunDirectory.create(tmp_path / "runs", "upload-test", exact=tmp_path / "runs" / "upload-test")
    handle = start_job("upload", settings, run, {"folder": str(tmp_path / "none"), "repo": "someone/model"})
    assert handle.wait(timeout=120) == 2
    deadline = time.monotonic() + 30
    while not output.exists():
        assert time.monotonic() < deadline, f"the notify command was not run; worker.log:\n{run.log_path.read_text()}"
        time.sleep(0.05)
    notified = json.loads(output.read_text())
    assert notified["HERETIC_RUN_DIR"] == str(run.path)
    assert notified["HERETIC_RUN_KIND"] == "upload" and notified["HERETIC_RUN_STATUS"] == "failed"
    assert notified["HERETIC_RUN_EXIT_CODE"] == "2"
    assert "got no token" in notified["HERETIC_RUN_RESULT"]
    assert notified["stdin"].startswith("upload run upload-test failed (exit code 2): The upload worker got no token")
    assert notified["stdin"].rstrip().endswith(str(run.path))


def test_the_url_gets_the_message_with_a_title(posts: Posts) -> None:
    end = RunEnd(Path("/runs/20261201-demo"), "abliterate", 0, "chose trial 4: 0/100 refusals, KL 0.004")
    notify_run_end(end, NotifySettings(notify_url=posts.url))
    headers, body = posts.received[0]
    assert headers["Title"] == "heretic-tui: abliterate finished"
    assert body == ("abliterate run 20261201-demo finished (exit code 0): chose trial 4: 0/100 refusals, KL 0.004\n"
                    "/runs/20261201-demo")


@pytest.mark.parametrize("command", ["no-such-notifier-program --x", f"{sys.executable} -c 'import sys; sys.exit(3)'",
                                     f"{sys.executable} -c 'import time; time.sleep(30)'", "unbalanced 'quote"])
def test_a_broken_command_is_logged_and_never_raised(command: str) -> None:
    lines: list[str] = []
    end = RunEnd(Path("/runs/x"), "export", 130, "cancelled by the user")
    notify_run_end(end, NotifySettings(notify_command=command, notify_timeout=1), log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("warning: the notify command failed:")


def test_an_unreachable_or_refusing_url_is_logged_without_its_path() -> None:
    refusing = Posts(status=500)
    lines: list[str] = []
    end = RunEnd(Path("/runs/x"), "finetune", 1, "RuntimeError: boom")
    try:
        notify_run_end(end, NotifySettings(notify_url=refusing.url, notify_timeout=5), log=lines.append)
    finally:
        refusing.close()
    notify_run_end(end, NotifySettings(notify_url=refusing.url, notify_timeout=2), log=lines.append)
    notify_run_end(end, NotifySettings(notify_url="ftp://example/secret-topic"), log=lines.append)
    assert len(lines) == 3 and "HTTP 500" in lines[0]
    assert all("my-topic" not in line and "secret-topic" not in line for line in lines)


def test_the_result_line_is_the_summary_of_a_finished_run_or_the_reason_of_a_cancelled_one(tmp_path: Path) -> None:
    from heretic_tui.core.operations.notify import result_line
    from heretic_tui.core.runs.events import JobCancelled, JobFinished

    (tmp_path / "events.jsonl").write_text(JobFinished(summary={"chosen_trial": 4, "kl": 0.0033236, "trials": 12,
                                                                "pareto": [1, 2]}).to_json() + "\n")
    assert result_line(tmp_path, 0, None) == "chosen_trial 4, kl 0.003324, trials 12"
    (tmp_path / "events.jsonl").write_text(JobFinished(summary={"result": "served 3 request(s)"}).to_json() + "\n"
                                           + JobCancelled(reason="cancelled by the user").to_json() + "\n")
    assert result_line(tmp_path, 130, None) == "cancelled by the user"
    (tmp_path / "events.jsonl").unlink()
    assert result_line(tmp_path, 3, "the disk is full") == "the disk is full"


def test_a_url_with_a_user_and_password_is_logged_by_its_host_alone() -> None:
    refusing = Posts(status=401)
    lines: list[str] = []
    credentialed = refusing.url.replace("http://", "http://alice:hunter2-password@")
    try:
        notify_run_end(RunEnd(Path("/runs/x"), "abliterate", 0, "done"),
                       NotifySettings(notify_url=credentialed, notify_timeout=5), log=lines.append)
    finally:
        refusing.close()
    assert len(lines) == 1 and "HTTP 401" in lines[0] and f"127.0.0.1:{refusing.server.server_port}" in lines[0]
    assert "alice" not in lines[0] and "hunter2" not in lines[0] and "my-topic" not in lines[0]
