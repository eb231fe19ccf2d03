"""Events survive the journal: every registered kind round-trips through one JSON line, and a damaged line never
crashes a reader."""

from __future__ import annotations

import dataclasses
import json

import pytest

from heretic_tui.core.runs.events import EVENT_TYPES, JobError, TrialFinished, UnknownEvent, decode_event, event_from_json


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_every_event_round_trips_through_json(kind: str) -> None:
    cls = EVENT_TYPES[kind]
    original = cls()
    line = original.to_json()
    assert "\n" not in line
    assert json.loads(line)["type"] == kind
    assert event_from_json(line) == original


def test_fields_with_values_round_trip() -> None:
    original = TrialFinished(number=3, total=10, refusals=2, refusal_total=100, kl=0.0123, seconds=1.5,
                             params={"direction_scope": "global", "attention.max_weight": 1.1}, pareto=[3, 1])
    restored = event_from_json(original.to_json())
    assert dataclasses.asdict(restored) == dataclasses.asdict(original)


def test_unknown_kinds_are_kept_not_fatal() -> None:
    restored = event_from_json('{"type": "from_the_future", "time": 1.0, "x": 1}')
    assert isinstance(restored, UnknownEvent) and restored.type == "from_the_future"


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "3", "null", "{not json"])
def test_a_line_that_is_not_an_object_is_rejected(line: str) -> None:
    with pytest.raises(ValueError):
        event_from_json(line)


def test_fields_of_the_wrong_type_are_coerced_or_dropped_and_named() -> None:
    decoded = decode_event(json.dumps({"type": "trial_finished", "number": "7", "kl": "high", "refusals": True,
                                       "params": ["not", "a", "dict"], "pareto": [1, "two", 3.0], "time": 5}))
    trial = decoded.event
    assert isinstance(trial, TrialFinished)
    assert trial.number == 7 and trial.kl == 0.0 and trial.refusals == 0 and trial.params == {}
    assert trial.pareto == [1, 3] and trial.time == 5.0
    named = " ".join(decoded.problems)
    for field in ("'number'", "'kl'", "'refusals'", "'params'", "'pareto'"):
        assert field in named
    assert "'time'" not in named, "an int for a float field is ordinary JSON, not damage"


def test_optional_fields_accept_null_and_a_sound_line_has_no_problems() -> None:
    decoded = decode_event(JobError(message="x", exit_code=None).to_json())
    assert decoded.problems == () and decoded.event == JobError(message="x", exit_code=None, time=decoded.event.time)
    assert decode_event('{"type": "error", "exit_code": "3"}').event.exit_code == 3
    assert decode_event('{"type": "progress", "total": null}').problems == ()


def test_a_line_without_a_type_is_damage_but_still_read() -> None:
    decoded = decode_event('{"message": "hello"}')
    assert isinstance(decoded.event, UnknownEvent) and decoded.problems == ("it has no type",)
