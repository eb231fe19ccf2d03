"""The registry from real core output: an abliteration of the demo model, its export, a fine-tune of the export.

Nothing here is hand-written JSON: the jobs run through the core exactly as the command line starts them, so the
dates and fields the registry reads are the ones export and fine-tuning really write (an ISO ``created`` date in
heretic.json once kept every fine-tune out of the index).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetuning.finetune_helpers import chat_rows, finetune_settings, write_jsonl
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.lifecycle import delete_run
from heretic_tui.core.runs.registry import (
    ROLE_ABLITERATED,
    ROLE_BASE,
    ROLE_FINE_TUNED,
    STATUS_MISSING,
    Registry,
    default_database_path,
    timestamp,
)
from heretic_tui.core.runs.run_directory import STATUS_FINISHED, RunDirectory
from heretic_tui.core.settings import Settings
from run_helpers import cli

pytestmark = pytest.mark.slow


def finished(handle: object, what: str) -> RunDirectory:
    code = handle.wait(timeout=600)  # type: ignore[attr-defined]
    run = handle.run  # type: ignore[attr-defined]
    assert code == 0, f"the {what} job ended with {code}:\n{run.log_path.read_text()[-3000:]}"
    return run


def test_lineage_of_a_real_abliteration_export_and_fine_tune(tmp_path: Path, isolated_home: Path) -> None:
    from heretic_tui.core.abliteration.job import start_abliteration
    from heretic_tui.core.finetuning.job import start_finetune
    from heretic_tui.core.shipping.export import start_export

    runs = tmp_path / "runs"
    settings = Settings()
    settings.model.model = "demo"
    settings.optimization.trials = 2
    settings.output.runs_directory = str(runs)
    abliteration = finished(start_abliteration(settings), "abliteration")
    chosen = json.loads(abliteration.report_path.read_text())["chosen_trial"]
    export = tmp_path / "export"
    export_run = finished(start_export(abliteration.path, chosen, export), "export")
    assert json.loads((export / "heretic.json").read_text())["created"].endswith("Z"), "export writes an ISO date"
    tune = finetune_settings(export, [str(write_jsonl(tmp_path / "data.jsonl", chat_rows()))], max_steps=4,
                             checkpoint_steps=4, logging_steps=2)
    tune.output.runs_directory = str(runs)
    fine_tune = finished(start_finetune(tune), "fine-tuning")
    adapter = Path(json.loads(fine_tune.report_path.read_text())["adapter_dir"])

    recorded = Registry()
    assert recorded.path == default_database_path()
    expected = [(ROLE_BASE, "demo"), (ROLE_ABLITERATED, str(export)), (ROLE_FINE_TUNED, str(adapter))]
    assert [(model.role, model.path) for model in recorded.lineage(adapter)] == expected, \
        "the workers index what they made as they finish"
    assert recorded.lineage(adapter)[1].trial == chosen
    assert {run.path for run in recorded.list_runs()} >= {abliteration.path, fine_tune.path}
    assert all(run.status == STATUS_FINISHED for run in recorded.list_runs())

    rebuilt = Registry(tmp_path / "rebuilt.sqlite3")
    rebuilt.rebuild(runs)
    assert [(model.role, model.path) for model in rebuilt.lineage(adapter)] == expected
    assert {run.path for run in rebuilt.list_runs()} == {abliteration.path, export_run.path, fine_tune.path}
    shown = cli(["registry", "lineage", str(adapter)], isolated_home)
    assert shown.returncode == 0 and str(export) in shown.stdout, shown.stdout + shown.stderr

    delete_run(fine_tune, rebuilt)
    assert not fine_tune.path.exists()
    assert {run.path for run in rebuilt.list_runs()} == {abliteration.path, export_run.path}, \
        "only the deleted run (and what lived inside it) is forgotten"
    assert rebuilt.model(adapter) is None and rebuilt.model(export) is not None
    assert [run.status for run in recorded.list_runs() if run.path == fine_tune.path] == [STATUS_MISSING], \
        "a registry the caller did not pass is left alone: its record lists as missing"


@pytest.mark.parametrize(("value", "expected"), [
    (1700000000.5, 1700000000.5),
    (1700000000, 1700000000.0),
    ("1700000000.25", 1700000000.25),
    ("2023-11-14T22:13:20Z", 1700000000.0),
    ("2023-11-14T23:13:20+01:00", 1700000000.0),
    ("yesterday", None),
    (None, None),
    (True, None),
    (float("nan"), None),
])
def test_created_dates_as_numbers_or_iso(value: object, expected: float | None) -> None:
    assert timestamp(value) == expected


HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
time.sleep(120)
"""


def test_a_registry_held_by_another_process_is_a_short_wait_and_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    Registry(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(UserInputError) as raised:
            Registry(path).record_comparison(["demo"], "prompts.txt", tmp_path / "result.json")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    message = str(raised.value)
    assert str(path) in message and "locked" in message and "registry rebuild" in message
    assert waited < 20, f"waited {waited:.1f} s for a held registry (it was 30 s and a traceback)"
    Registry(path).record_comparison(["demo"], "prompts.txt", tmp_path / "result.json")


def test_the_command_line_reports_a_held_registry_in_one_paragraph(tmp_path: Path, isolated_home: Path) -> None:
    path = default_database_path()
    Registry(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        listed = cli(["registry", "runs"], isolated_home)
    finally:
        holder.kill()
        holder.wait()
    assert listed.returncode == 2, listed.stderr
    assert "Traceback" not in listed.stderr and "is held by another process" in listed.stderr
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
