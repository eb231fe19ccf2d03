"""A run whose events.jsonl ends mid-record (full disk, power loss) resumes with a journal that reads back whole."""

from __future__ import annotations

from pathlib import Path

from heretic_tui.core.runs.events import JobStarted, JobWarning, TrialFinished
from heretic_tui.core.runs.journal import read_journal
from heretic_tui.core.runs.run_directory import STATUS_FINISHED, RunDirectory
from run_helpers import cli, demo_abliteration


def test_a_torn_last_record_is_cut_kept_aside_and_reported_then_the_run_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    made = demo_abliteration(run_dir, tmp_path, trials=2)
    assert made.returncode == 0, made.stderr[-3000:]
    run = RunDirectory(run_dir)
    torn = TrialFinished(number=99, total=99, kl=0.5).to_json()[:40].encode()
    with open(run.events_path, "ab") as journal:
        journal.write(torn)
    whole_before = run.events_path.stat().st_size - len(torn)

    resumed = cli(["abliterate", "--headless", "--resume", "--run-dir", str(run_dir), "--trials", "3"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    data = run.events_path.read_bytes()
    assert torn not in data and data.endswith(b"\n")
    journal = read_journal(run.events_path)
    assert journal.damage is None, journal.damage
    assert run.status() == STATUS_FINISHED
    sides = list(run_dir.glob("events.jsonl.cut-*"))
    assert len(sides) == 1 and sides[0].read_bytes() == torn
    sessions = [index for index, item in enumerate(journal.events) if isinstance(item, JobStarted)]
    assert len(sessions) == 2
    warning = journal.events[sessions[1] + 1]
    assert isinstance(warning, JobWarning), "the cut is said right after the resumed session starts"
    assert f"cut {len(torn)} bytes" in warning.message and str(sides[0]) in warning.message
    assert f"cut {len(torn)} bytes" in resumed.stderr, "the follower shows it too"
    assert run.events_path.read_bytes()[:whole_before] == data[:whole_before], "nothing before the tear changed"
    assert sorted({item.number for item in journal.events if isinstance(item, TrialFinished)}) == [0, 1, 2]
