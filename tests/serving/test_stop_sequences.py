"""Stop sequences cut streamed text exactly where they start, even when one is split across pieces."""

from __future__ import annotations

import pytest

from heretic_tui.core.serving.stop_sequences import StopSequenceCutter


def cut(pieces: list[str], stop: list[str]) -> tuple[str, bool]:
    cutter = StopSequenceCutter(stop)
    text = "".join(cutter.feed(piece) for piece in pieces) + cutter.finish()
    return text, cutter.stopped


@pytest.mark.parametrize("pieces", [["hello wor", "ld. END more"], ["hello world. E", "N", "D more"],
                                    list("hello world. END more")])
def test_the_text_ends_before_the_stop_sequence_however_it_was_split(pieces: list[str]) -> None:
    assert cut(pieces, ["END"]) == ("hello world. ", True)


def test_a_partial_match_that_never_completes_is_sent_at_the_end() -> None:
    assert cut(["the E", "N"], ["END"]) == ("the EN", False)
    cutter = StopSequenceCutter(["END"])
    assert cutter.feed("the E") == "the "
    assert cutter.feed("x") == "Ex"


def test_the_earliest_of_several_stop_sequences_wins_and_nothing_follows() -> None:
    cutter = StopSequenceCutter(["b", "a"])
    assert cutter.feed("xxab") == "xx"
    assert cutter.feed("more") == "" and cutter.finish() == ""
    assert cut(["plain"], []) == ("plain", False)
