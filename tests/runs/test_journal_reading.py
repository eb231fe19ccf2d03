"""The event journal is read whole-line by whole-line: a torn tail waits, a damaged line is named and skipped."""

from __future__ import annotations

from pathlib import Path

from heretic_tui.core.runs.events import JobStarted, LogLine, TrialFinished
from heretic_tui.core.runs.journal import complete_length, cut_partial_record, read_journal, read_new_events


def write_lines(path: Path, *lines: str, tail: str = "") -> None:
    path.write_bytes("".join(line + "\n" for line in lines).encode() + tail.encode())


def test_a_torn_tail_is_left_for_the_next_read_and_cut_before_appending(tmp_path: Path) -> None:
    journal = tmp_path / "events.jsonl"
    whole = [JobStarted(job="abliterate", time=1.0).to_json(), TrialFinished(number=0, kl=0.5, time=2.0).to_json()]
    torn = TrialFinished(number=1, time=3.0).to_json()[:25]
    write_lines(journal, *whole, tail=torn)
    events, offset = read_new_events(journal, 0)
    assert [item.kind for item in events] == ["job_started", "trial_finished"]
    assert offset == complete_length(journal) == journal.stat().st_size - len(torn)
    assert read_journal(journal).damage is None, "a torn tail is not damage: a writer may be in the middle of it"

    cut, side = cut_partial_record(journal)
    assert cut == len(torn) and side is not None and side.read_bytes() == torn.encode()
    assert journal.read_bytes().endswith(b"\n") and journal.stat().st_size == offset
    assert cut_partial_record(journal) == (0, None), "cutting twice changes nothing"


def test_damaged_lines_are_named_and_skipped_and_the_rest_still_reads(tmp_path: Path) -> None:
    journal = tmp_path / "events.jsonl"
    write_lines(journal, JobStarted(job="abliterate").to_json(), "[1, 2, 3]", "{broken",
                '{"type": "trial_finished", "number": "two", "kl": 0.1}', "carriage\rreturn",
                LogLine(message="still here").to_json())
    contents = read_journal(journal)
    assert contents.damage is not None and contents.damage.startswith("line 2 ")
    assert [item.kind for item in contents.events] == ["job_started", "trial_finished", "log"]
    assert contents.events[1].number == 0 and contents.events[1].kl == 0.1
    events, offset = read_new_events(journal, 0)
    assert [item.kind for item in events] == ["job_started", "trial_finished", "log"]
    assert offset == journal.stat().st_size, "a raw carriage return inside a line must not stall a follower"


def test_the_first_wrong_field_is_named_with_its_line(tmp_path: Path) -> None:
    journal = tmp_path / "events.jsonl"
    write_lines(journal, JobStarted(job="abliterate").to_json(), '{"type": "progress", "completed": [1]}')
    damage = read_journal(journal).damage
    assert damage is not None and "line 2" in damage and "'completed'" in damage


def test_a_missing_journal_reads_empty(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "none.jsonl").events == []
    assert read_new_events(tmp_path / "none.jsonl", 0) == ([], 0)
    assert cut_partial_record(tmp_path / "none.jsonl") == (0, None)
