"""The recorded runs the TUI tests stand on: placing a run changes its paths and times and nothing else, a run cut
short is the real journal's beginning, and the committed screen scene still has the shape the core writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from recorded_runs import (
    SCENE,
    SCENE_FILE,
    SCENE_ROOT,
    START,
    Recording,
    build_scene,
    scene_shape,
    shown_as_scene_root,
    trial_finished,
)

from heretic_tui.core.runs.events import JobFinished, Metrics, TrialFinished, TrialStarted
from heretic_tui.core.runs.journal import read_journal
from heretic_tui.core.runs.run_directory import RunDirectory


def recorded_events(recording: Recording, name: str) -> list:
    return read_journal(recording.path(name) / "events.jsonl").events


def test_placing_moves_every_time_by_one_amount_and_names_the_new_folder(recorded: Recording,
                                                                         tmp_path: Path) -> None:
    source = recorded.path("finished")
    run = recorded.place("finished", tmp_path, "copy", start=START)
    created = json.loads((source / "job.json").read_text())["created"]
    shift = START - created
    original = recorded_events(recorded, "finished")
    assert len(run.events) == len(original) > 0
    for placed, recorded_event in zip(run.events, original):
        assert placed.time == pytest.approx(recorded_event.time + shift)
        before = json.loads(recorded_event.to_json().replace(str(source), str(run.path)))
        after = json.loads(placed.to_json())
        before.pop("time"), after.pop("time")
        assert after == before, "placing changes paths and times, nothing else"
    assert json.loads((run.path / "job.json").read_text())["created"] == pytest.approx(START)
    worker = run.read("worker.json")
    assert worker["finished"] - worker["started"] == pytest.approx(
        json.loads((source / "worker.json").read_text())["finished"]
        - json.loads((source / "worker.json").read_text())["started"])
    assert (run.path / "job.json").stat().st_mtime == pytest.approx(START, abs=1.0)
    for path in run.path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".toml", ".log", ".md"):
            assert str(source) not in path.read_text(errors="replace"), f"{path} still names the recording"
    assert RunDirectory(run.path).status() == "finished"


def test_runs_placed_together_name_each_other(recorded: Recording, tmp_path: Path) -> None:
    placed = recorded.place_together({"finished": "study", "finetune": "finetune"}, tmp_path)
    model = json.loads((placed["finetune"].path / "job.json").read_text())["model"]
    assert Path(model).is_relative_to(placed["finished"].path / "exports") and Path(model).is_dir()
    metadata = json.loads((placed["finetune"].path / "merged" / "heretic.json").read_text())
    assert metadata["source_model"] == model and metadata["run_dir"] == str(placed["finetune"].path)


def test_a_run_cut_short_is_the_beginning_of_the_real_journal(recorded: Recording, tmp_path: Path) -> None:
    """The finished study's first four trials share a pass; trial 5 is guided and runs alone."""
    run = recorded.place("finished", tmp_path / "cut", "live", trials=5)
    whole = recorded.place("finished", tmp_path / "whole", "live")
    assert [item.to_json() for item in run.events + run.rest] == [
        item.to_json().replace(str(whole.path), str(run.path)) for item in whole.events]
    assert isinstance(run.events[-1], TrialStarted) and run.events[-1].number == 5
    assert sorted(run.trials) == [0, 1, 2, 3, 4]
    assert not (run.path / "report.json").exists() and not (run.path / "exports").exists()
    folder = RunDirectory(run.path)
    assert folder.worker_alive() and folder.status() == "running", "worker.json names a live process"
    log = (run.path / "worker.log").read_text()
    assert "trial 4: refusals" in log and "trial 5: refusals" not in log, "the log ends where the journal does"

    played = run.play_on(trial_finished(7))
    assert isinstance(played[-1], TrialFinished) and played[-1].number == 7
    assert sorted(run.trials) == list(range(8))
    assert [item.to_json() for item in read_journal(run.path / "events.jsonl").events] == \
        [item.to_json() for item in run.events]
    run.play_on()
    assert isinstance(run.events[-1], JobFinished) and not run.rest
    with pytest.raises(AssertionError, match="no such event"):
        run.play_on(trial_finished(0))


def test_a_cut_needs_a_trial_the_run_has(recorded: Recording, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no trial 999 to cut at"):
        recorded.place("finished", tmp_path, trials=999)


def test_the_committed_scene_has_the_shape_the_core_writes_today(recorded: Recording, tmp_path: Path) -> None:
    roles = build_scene(recorded, tmp_path)
    committed = json.loads((SCENE / SCENE_FILE).read_text())["roles"]
    assert set(roles) == set(committed)
    fresh, accepted = scene_shape(tmp_path, roles), scene_shape(SCENE, committed)
    differences = {role: {"new": sorted(set(fresh[role]) - set(accepted[role])),
                          "gone": sorted(set(accepted[role]) - set(fresh[role]))}
                   for role in roles if fresh[role] != accepted[role]}
    assert not differences, (
        "the core now writes runs of another shape than the committed screen scene (tests/tui/scene): run "
        "`python tests/tui/recorded_runs.py scene`, then update the snapshots and look at them: "
        + json.dumps(differences, indent=1)[:6000])


def test_the_scene_folder_is_shown_by_its_accepted_name_even_where_a_path_was_cut() -> None:
    root = Path("/tmp/heretic-tui-sAb3_x9Qz")
    assert len(str(root)) == len(SCENE_ROOT)
    text = f"{root}/runs/x · {str(root)[:-3]}… · {str(root)[:-8]}"
    assert shown_as_scene_root(text, root) == f"{SCENE_ROOT}/runs/x · {SCENE_ROOT[:-3]}… · {SCENE_ROOT[:-8]}"
    assert not re.search("Ab3", shown_as_scene_root(text, root))


def test_a_cut_inside_a_batch_keeps_the_whole_batch_in_flight(recorded: Recording, tmp_path: Path) -> None:
    run = recorded.place("finished", tmp_path, "batch", trials=1)
    search = next(item for item in run.events if isinstance(item, Metrics) and item.name == "search")
    assert search.values["trial_batch"] > 1, "the recorded study shares passes, as the default does"
    in_flight = [item.number for item in run.events if isinstance(item, TrialStarted)]
    assert in_flight == list(range(search.values["random_trials"])) and not run.trials
