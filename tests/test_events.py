"""Events survive the journal: every registered kind round-trips through one JSON line."""

from __future__ import annotations

import dataclasses
import json

import pytest

from heretic_tui.core.runs.events import EVENT_TYPES, TrialFinished, UnknownEvent, event_from_json


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
