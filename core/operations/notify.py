"""Telling the user that a run ended, for the runs nobody watches: a command to run and/or a URL to POST to.

The worker calls :func:`notify_run_end` after the outcome is recorded (journal, worker.json, registry), so a slow or
broken notifier can delay the worker's exit by at most ``notify.notify_timeout`` but never change the outcome: every
failure is one line in worker.log and nothing else. The message is the same for both channels: the run folder's
name, its kind and status, the result line (the summary's ``result``, the error's first line, or the cancel
reason) and the folder's path. An ntfy topic URL works as it is (the body becomes the notification, ``Title`` its
title); a command gets the message on standard input and the same facts in HERETIC_RUN_* variables.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from heretic_tui.core.errors import EXIT_CANCELLED, EXIT_OK
from heretic_tui.core.runs.events import JobCancelled, JobError, JobFinished
from heretic_tui.core.runs.journal import read_journal
from heretic_tui.core.settings import NotifySettings

RESULT_LENGTH = 300
"""Longest result line sent: a notification is a glance, the run folder has the rest."""
OUTPUT_LENGTH = 200


@dataclass(frozen=True)
class RunEnd:
    """What a notification says about a run that ended."""

    run_dir: Path
    kind: str
    exit_code: int
    result: str

    @property
    def status(self) -> str:
        if self.exit_code == EXIT_OK:
            return "finished"
        return "cancelled" if self.exit_code == EXIT_CANCELLED else "failed"

    @property
    def title(self) -> str:
        return f"heretic-tui: {self.kind} {self.status}"

    def message(self) -> str:
        return (f"{self.kind} run {self.run_dir.name} {self.status} (exit code {self.exit_code}): {self.result}\n"
                f"{self.run_dir}")

    def environment(self) -> dict[str, str]:
        return {"HERETIC_RUN_DIR": str(self.run_dir), "HERETIC_RUN_KIND": self.kind,
                "HERETIC_RUN_STATUS": self.status, "HERETIC_RUN_EXIT_CODE": str(self.exit_code),
                "HERETIC_RUN_RESULT": self.result}


def result_line(run_dir: Path, exit_code: int, reason: str | None) -> str:
    """The one line that says how the run ended, from its journal's terminal event (or the recorded reason)."""
    last = None
    try:
        events = read_journal(run_dir / "events.jsonl").events
    except OSError:
        events = []
    for item in reversed(events):
        if item.terminal:
            last = item
            break
    if isinstance(last, JobFinished):
        summary = last.summary or {}
        text = str(summary.get("result") or ", ".join(
            f"{key} {_figure(value)}" for key, value in summary.items() if isinstance(value, (str, int, float, bool))))
    elif isinstance(last, JobError):
        text = last.message
    elif isinstance(last, JobCancelled):
        text = last.reason
    else:
        text = reason or ("finished" if exit_code == EXIT_OK else "ended without a recorded reason (see worker.log)")
    text = " ".join((text or "").split())
    return text if len(text) <= RESULT_LENGTH else text[:RESULT_LENGTH - 1] + "…"


def _figure(value: str | int | float | bool) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def notify_run_end(end: RunEnd, settings: NotifySettings, log: Callable[[str], None] = print) -> None:
    """Run the notify command and POST to the notify URL (whichever are set); failures are logged, never raised."""
    if settings.notify_command.strip():
        try:
            _run_command(end, settings)
        except Exception as error:
            log(f"warning: the notify command failed: {error}")
    if settings.notify_url.strip():
        try:
            _post(end, settings)
        except Exception as error:
            host = _host(settings.notify_url)
            message = str(error).replace(settings.notify_url.strip(), host)
            log(f"warning: the notification to {host} failed: {type(error).__name__}: {message}")


def _run_command(end: RunEnd, settings: NotifySettings) -> None:
    try:
        command = shlex.split(settings.notify_command)
    except ValueError as error:
        raise RuntimeError(f"notify.notify_command cannot be split into words ({error}); fix its quoting") from None
    try:
        finished = subprocess.run(command, input=end.message(), text=True, capture_output=True,
                                  timeout=settings.notify_timeout, env={**os.environ, **end.environment()},
                                  check=False)
    except FileNotFoundError:
        raise RuntimeError(f"{command[0]!r} was not found; give the program's full path in notify.notify_command") \
            from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{command[0]} did not end within {settings.notify_timeout:g} s "
                           "(notify.notify_timeout); it was stopped") from None
    if finished.returncode != 0:
        output = " ".join((finished.stderr or finished.stdout or "").split())[:OUTPUT_LENGTH]
        raise RuntimeError(f"{command[0]} exited with code {finished.returncode}" + (f": {output}" if output else ""))


def _post(end: RunEnd, settings: NotifySettings) -> None:
    import httpx2

    url = settings.notify_url.strip()
    if urlsplit(url).scheme not in ("http", "https"):
        raise RuntimeError("notify.notify_url must be an http:// or https:// URL, e.g. https://ntfy.sh/your-topic")
    response = httpx2.post(url, content=end.message().encode("utf-8"), timeout=settings.notify_timeout,
                           headers={"Title": end.title, "Content-Type": "text/plain; charset=utf-8"})
    if response.status_code >= 400:
        raise RuntimeError(f"HTTP {response.status_code} {response.reason_phrase}")


def _host(url: str) -> str:
    """Only the host (and port): the path of a notify URL (an ntfy topic) is as good as a password, and so are the
    user and password a URL may carry before its host."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname:
        return "the notify URL"
    return parts.hostname + (f":{port}" if port else "")
