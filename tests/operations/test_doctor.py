"""``heretic-tui doctor``: every line ok / warning / problem with its fix, the exit code by the worst line."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

from heretic_tui.core.errors import EXIT_FAILED, EXIT_OK
from heretic_tui.core.operations import doctor
from heretic_tui.core.operations.doctor import OK, PROBLEM, WARNING, Check, TerminalFacts
from heretic_tui.core.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from private_tmpfs import tmpfs_problem  # noqa: E402

TOKEN = "hf_doctorTestTokenThatMustNeverBePrinted"


class _Answering(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_hub() -> Iterator[str]:
    """A stand-in Hub on a loopback port that answers every request with HTTP 401, as the Hub does without token."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def doctor_cli(*arguments: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own; the suite's HF_HUB_OFFLINE is left out unless ``environment`` sets it."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update(environment or {})
    return subprocess.run([sys.executable, "-m", "heretic_tui.cli", "doctor", *arguments], capture_output=True,
                          text=True, env=env, timeout=120)


def by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


def test_a_reachable_hub_and_a_token_are_ok_and_the_token_is_never_shown(local_hub: str, tmp_path: Path) -> None:
    result = doctor_cli("--json", "--set", f"output.runs_directory={tmp_path / 'runs'}",
                        environment={"HF_ENDPOINT": local_hub, "HF_TOKEN": TOKEN})
    assert TOKEN not in result.stdout + result.stderr
    checks = by_name(json.loads(result.stdout))
    assert checks["Hub"]["level"] == OK and "HTTP 401" in checks["Hub"]["detail"], checks["Hub"]
    assert checks["Hub token"] == {"name": "Hub token", "level": OK, "detail": "present (from HF_TOKEN; not shown)",
                                   "fix": ""}
    assert checks["Runs folder"]["level"] == OK and str(tmp_path) in checks["Runs folder"]["detail"]
    for name in ("Python", "torch", "bitsandbytes", "flash-attn", "vllm", "Disk (runs)", "Disk (HF cache)",
                 "Terminal"):
        assert name in checks, name
    worst = json.loads(result.stdout)["worst"]
    assert result.returncode == (EXIT_FAILED if worst == PROBLEM else EXIT_OK)


def test_an_unreachable_hub_is_a_problem_with_its_fix_and_exit_code_1(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = doctor_cli("--set", f"output.runs_directory={tmp_path}", environment={"HF_ENDPOINT": endpoint})
    assert result.returncode == EXIT_FAILED, result.stdout
    hub_line = next(line for line in result.stdout.splitlines() if line.startswith("PROBLEM  Hub "))
    assert endpoint in hub_line
    fix = result.stdout.split(hub_line, 1)[1]
    assert "fix: " in fix and "refused the connection" in " ".join(fix.split())
    assert result.stdout.rstrip().splitlines()[-1].endswith("1 problem")


def test_offline_mode_is_a_warning_that_contacts_nothing() -> None:
    result = doctor_cli("--json", environment={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    hub = by_name(json.loads(result.stdout))["Hub"]
    assert hub["level"] == WARNING and "HF_HUB_OFFLINE" in hub["detail"] and hub["fix"]


def test_a_runs_folder_that_is_a_file_is_a_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    check = doctor.write_check(blocker / "runs")
    assert check.level == PROBLEM and "is a file" in check.detail and "output.runs_directory" in check.fix


@pytest.mark.skipif(tmpfs_problem() is not None, reason=str(tmpfs_problem()))
def test_a_read_only_runs_folder_is_a_problem(tmp_path: Path) -> None:
    """On a real read-only mount (a tmpfs in a private namespace), where even root cannot write."""
    folder = tmp_path / "mounted"
    folder.mkdir()
    script = (f"mount -t tmpfs -o ro,size=64k tmpfs {folder} && {sys.executable} -m heretic_tui.cli doctor --json "
              f"--set output.runs_directory={folder}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    runs = by_name(json.loads(result.stdout))["Runs folder"]
    assert runs["level"] == PROBLEM and "cannot be written" in runs["detail"], runs
    assert result.returncode == EXIT_FAILED


def test_free_disk_thresholds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    usage = namedtuple("usage", "total used free")
    for free, level in ((500 * 10**9, OK), (10 * 10**9, WARNING), (10**9, PROBLEM)):
        monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path, free=free: usage(10**12, 10**12 - free, free))
        check = doctor.disk_check("Disk (runs)", tmp_path)
        assert check.level == level, (free, check)
        assert (check.fix != "") == (level != OK)


def test_terminal_size_and_colours() -> None:
    small = doctor.terminal_checks(TerminalFacts(True, 70, 20, "standard"))
    assert [(check.name, check.level) for check in small] == [("Terminal size", WARNING), ("Colours", WARNING)]
    assert "70x20" in small[0].detail and "TERM=xterm-256color" in small[1].fix
    large = doctor.terminal_checks(TerminalFacts(True, 120, 40, "truecolor"))
    assert [(check.level, check.detail) for check in large] == [(OK, "120x40"), (OK, "true colour")]


def test_optional_packages_matter_only_with_cuda() -> None:
    with_cuda = {check.name: check for check in doctor.package_checks(has_cuda=True)}
    without = {check.name: check for check in doctor.package_checks(has_cuda=False)}
    for name, check in with_cuda.items():
        if check.detail.startswith("not installed"):
            assert check.level == WARNING and check.fix, check
            assert without[name].level == OK


def test_exit_code_follows_the_worst_line() -> None:
    fine, warned, broken = Check("a", OK, ""), Check("b", WARNING, "", "fix"), Check("c", PROBLEM, "", "fix")
    assert doctor.exit_code([fine, warned]) == EXIT_OK
    assert doctor.exit_code([fine, warned], strict=True) == EXIT_FAILED
    assert doctor.exit_code([fine, broken]) == EXIT_FAILED
    assert doctor.summary_line([fine, warned, broken]) == "1 ok, 1 warning, 1 problem"


def test_run_checks_uses_the_given_hub_check_and_terminal(tmp_path: Path) -> None:
    settings = Settings()
    settings.output.runs_directory = str(tmp_path)
    checks = doctor.run_checks(settings, TerminalFacts(False, 0, 0, None),
                               check_hub=lambda endpoint: Check("Hub", OK, "stand-in"))
    assert [check.name for check in checks][-2:] == ["Hub", "Terminal"]
