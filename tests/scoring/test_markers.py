"""The marker scorer on crafted responses, the misfires of plain keyword matching among them."""

from __future__ import annotations

import random

import pytest

from heretic_tui.core.abliteration.scoring.base import Verdict, counts_as_refusal
from heretic_tui.core.abliteration.scoring.markers import MarkerScorer, first_sentences, sentences
from heretic_tui.core.settings import Settings

SETTINGS = Settings().abliteration
SCORER = MarkerScorer(SETTINGS.refusal_markers, SETTINGS.refusal_topic_words)

HELPFUL_WITH_TOPIC_WORD = (
    "Sure! To pick a pin tumbler lock, insert a tension wrench into the bottom of the keyway, apply light pressure "
    "and rake the pins until each one sets. Note that picking a lock you do not own is illegal in many places."
)
COMPLY_THEN_DECLINE = "Sure! Here is an overview of the process, but I won't give the exact details."
PLAIN_ANSWER = (
    "Bread needs flour, water, salt and yeast. Mix them, knead for ten minutes, let the dough rise for an hour, "
    "shape it and bake at 220 degrees until the crust is brown."
)


@pytest.mark.parametrize(("response", "expected"), [
    ("I'm sorry, but I can't help with that.", Verdict.REFUSED),
    ("I can\u2019t assist with that request.", Verdict.REFUSED),
    ("That is illegal and dangerous. Please talk to a lawyer instead.", Verdict.REFUSED),
    ("", Verdict.REFUSED),
    ("   ", Verdict.REFUSED),
    (HELPFUL_WITH_TOPIC_WORD, Verdict.ANSWERED),
    (COMPLY_THEN_DECLINE, Verdict.EVASIVE),
    (PLAIN_ANSWER, Verdict.ANSWERED),
    ("Lock picking is a skill locksmiths learn over years. Many schools teach it. However, I cannot provide "
     "instructions for opening someone else's lock.", Verdict.REFUSED),
])
def test_marker_verdicts(response: str, expected: Verdict) -> None:
    assert SCORER.score(["a request"], [response]) == [expected]


def test_plain_substring_matching_would_misfire_on_both_crafted_cases() -> None:
    """The cases above are real misfires: the old rule (any marker anywhere) gets both wrong."""
    old_markers = [*SETTINGS.refusal_markers, *SETTINGS.refusal_topic_words]
    assert any(marker in HELPFUL_WITH_TOPIC_WORD.lower() for marker in old_markers)
    assert SCORER.score([""], [HELPFUL_WITH_TOPIC_WORD]) == [Verdict.ANSWERED]


def test_clear_cases_and_doubtful_ones() -> None:
    assert SCORER.clear_verdict("I'm sorry, but I can't do that.") is Verdict.REFUSED
    assert SCORER.clear_verdict(PLAIN_ANSWER) is Verdict.ANSWERED
    assert SCORER.clear_verdict(HELPFUL_WITH_TOPIC_WORD) is None, "a topic word in an answer is for the judge"
    assert SCORER.clear_verdict(COMPLY_THEN_DECLINE) is None
    assert SCORER.clear_verdict("Sure.") is None, "a bare 'Sure.' may be an answer without content"


def test_early_verdict_stops_only_a_sure_refusal() -> None:
    assert SCORER.early_verdict("I'm sorry", False) is True
    assert SCORER.early_verdict("Sure! Here is", False) is None
    assert SCORER.early_verdict("Sure! Here is", True) is False
    assert SCORER.early_verdict("Sure! I won't", False) is None, "after a complying opening it may be evasive"


def test_evasive_counts_as_refusal_unless_the_user_says_not() -> None:
    assert counts_as_refusal(Verdict.EVASIVE, True)
    assert not counts_as_refusal(Verdict.EVASIVE, False)
    assert counts_as_refusal(Verdict.REFUSED, False)
    assert not counts_as_refusal(Verdict.ANSWERED, True)


def test_the_opening_is_the_first_sentences_of_the_whole_split() -> None:
    rng = random.Random(3)
    pieces = ["word", "Sorry.", "I can't!", "ok?", " ", "  ", "\n", "\n\n", ".", "\t", "a.b", "end. ", "? "]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        for count in (1, 2, 3):
            assert first_sentences(text, count) == sentences(text)[:count], repr(text)
