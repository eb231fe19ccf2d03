"""A run folder with one damaged file is listed as damaged with the file named; every other run keeps working.

The runs are real: one demo abliteration made through the command line, copied and then damaged one way per copy,
so the files are exactly what the core writes and only the damage is made by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from heretic_tui.core.runs.registry import Registry
from heretic_tui.core.runs.run_directory import STATUS_DAMAGED, STATUS_FINISHED, RunDirectory, list_runs
from run_helpers import cli, demo_abliteration


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def insert_line(path: Path, line: str) -> None:
    """Put a damaged line in the middle of a journal, where a disk fault or an editor would leave it."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    middle = len(lines) // 2
    path.write_text("".join(lines[:middle] + [line + "\n"] + lines[middle:]), encoding="utf-8")


DAMAGES = {
    "job-not-json": ("job.json", lambda run: (run / "job.json").write_text('{"kind": "abli')),
    "job-a-list": ("job.json", lambda run: (run / "job.json").write_text("[1, 2]")),
    "job-kind-a-number": ("job.json", lambda run: (run / "job.json").write_text('{"kind": 5, "arguments": {}}')),
    "job-unknown-kind": ("job.json", lambda run: (run / "job.json").write_text('{"kind": "teleport"}')),
    "worker-not-json": ("worker.json", lambda run: (run / "worker.json").write_text("{pid")),
    "worker-pid-text": ("worker.json", lambda run: (run / "worker.json").write_text('{"pid": "abc"}')),
    "events-not-an-object": ("events.jsonl", lambda run: insert_line(run / "events.jsonl", "[1, 2]")),
    "events-wrong-field": ("events.jsonl", lambda run: insert_line(
        run / "events.jsonl", '{"type": "trial_finished", "number": "seven", "params": 3}')),
    "state-not-an-object": ("state.json", lambda run: (run / "state.json").write_text('"state"')),
    "state-not-json": ("state.json", lambda run: truncate_half(run / "state.json")),
    "directions-truncated": ("directions.safetensors", lambda run: truncate_half(run / "directions.safetensors")),
    "report-not-an-object": ("report.json", lambda run: (run / "report.json").write_text("[]")),
}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("damaged-home")
    root = home / "runs"
    made = demo_abliteration(root / "intact", home)
    assert made.returncode == 0, made.stderr[-3000:]
    for name, (_, damage) in DAMAGES.items():
        shutil.copytree(root / "intact", root / name)
        damage(root / name)
    return root


def test_every_damage_is_listed_as_damaged_with_the_file_named(runs_root: Path) -> None:
    runs = {run.path.name: run for run in list_runs(runs_root)}
    assert set(runs) == {"intact", *DAMAGES}
    assert runs["intact"].status() == STATUS_FINISHED and runs["intact"].damage() is None
    for name, (file_name, _) in DAMAGES.items():
        damage = runs[name].damage()
        assert runs[name].status() == STATUS_DAMAGED, name
        assert damage is not None and damage.startswith(f"{file_name} of the run {runs[name].path}"), (name, damage)


def test_the_runs_command_lists_every_run_and_names_each_damage(runs_root: Path, tmp_path: Path) -> None:
    listed = cli(["runs", "--set", f"output.runs_directory={runs_root}"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    intact = [line for line in lines if line.endswith(str(runs_root / "intact"))]
    assert len(intact) == 1 and intact[0].startswith("finished"), listed.stdout
    for name, (file_name, _) in DAMAGES.items():
        index = next(number for number, line in enumerate(lines) if line.endswith(str(runs_root / name)))
        assert lines[index].startswith("damaged"), lines[index]
        assert f"{file_name} of the run {runs_root / name}" in lines[index + 1], lines[index + 1]


def test_the_registry_indexes_damaged_runs_without_raising(runs_root: Path, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite3")
    registry.rebuild(runs_root)
    statuses = {record.path.name: record.status for record in registry.list_runs()}
    assert statuses["intact"] == STATUS_FINISHED
    assert all(statuses[name] == STATUS_DAMAGED for name in DAMAGES), statuses


def test_the_intact_run_still_attaches_and_exports(runs_root: Path, tmp_path: Path) -> None:
    attached = cli(["attach", "--headless", str(runs_root / "intact")], tmp_path)
    assert attached.returncode == 0 and "finished" in attached.stderr, attached.stderr[-3000:]
    trial = json.loads((runs_root / "intact" / "report.json").read_text())["chosen_trial"]
    exported = cli(["export", str(runs_root / "intact"), "--trial", str(trial), "--output", str(tmp_path / "model")],
                   tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "model" / "config.json").is_file()


def test_a_run_with_damaged_events_still_attaches(runs_root: Path, tmp_path: Path) -> None:
    attached = cli(["attach", "--headless", str(runs_root / "events-wrong-field")], tmp_path)
    assert attached.returncode == 0, attached.stderr[-3000:]
    assert "Traceback" not in attached.stderr


def test_resuming_a_run_whose_job_file_is_damaged_says_which_file(runs_root: Path, tmp_path: Path) -> None:
    damaged = runs_root / "job-not-json"
    before = sorted(path.name for path in damaged.iterdir())
    resumed = cli(["abliterate", "--headless", "--resume", "--run-dir", str(damaged), "--trials", "5"], tmp_path)
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert f"job.json of the run {damaged} is damaged" in resumed.stderr and "Traceback" not in resumed.stderr
    assert sorted(path.name for path in damaged.iterdir()) == before, "a refused resume writes nothing"
    assert RunDirectory(damaged).status() == STATUS_DAMAGED
