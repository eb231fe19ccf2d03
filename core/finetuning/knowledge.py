"""The knowledge test's questions and how a reply is judged right: does the model now answer from the documents?

Questions come from the user's JSONL file (``question``, ``answer``, optional ``aliases``) or from the synthesized
pairs held out of training. A reply is right when it contains the answer or one of its aliases, compared on
lower-cased words with punctuation ignored ("Port Ysolde." and "port ysolde" match); a long answer (a whole
sentence, as held-out template pairs have) counts as given when most of its content words are in the reply,
because no model repeats a sentence word for word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.finetuning.synthesis import content_words

LONG_ANSWER_WORDS = 4
"""Answers with more content words than this are judged by word recall instead of containment."""
LONG_ANSWER_RECALL = 0.7
NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
QUESTIONS_EXAMPLE = '{"question": "What is the capital of Qaranth?", "answer": "Port Ysolde", "aliases": ["Ysolde"]}'


@dataclass(frozen=True)
class KnowledgeQuestion:
    question: str
    answer: str
    aliases: tuple[str, ...] = field(default=())


def normalized(text: str) -> str:
    return " " + " ".join(NON_WORD.sub(" ", text.lower()).split()) + " "


def answer_matches(reply: str, answer: str, aliases: Sequence[str] = ()) -> bool:
    """Whether the reply gives the answer (or an alias); see the module docstring for how."""
    reply_text = normalized(reply)
    for expected in (answer, *aliases):
        words = content_words(expected)
        if len(words) > LONG_ANSWER_WORDS:
            said = set(content_words(reply))
            if sum(word in said for word in words) / len(words) >= LONG_ANSWER_RECALL:
                return True
        elif normalized(expected).strip() and normalized(expected) in reply_text:
            return True
    return False


def read_questions(path: str) -> list[KnowledgeQuestion]:
    """The questions of a JSONL file; a missing file or a malformed line is a UserInputError naming it."""
    location = Path(path).expanduser()
    try:
        lines = location.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(
            f"The knowledge questions file {location} (finetune.knowledge_questions) cannot be read: {error}. Give "
            f"a UTF-8 JSONL file with one object per line such as {QUESTIONS_EXAMPLE}, or leave the setting empty "
            "to ask held-out synthesized questions."
        ) from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        aliases = row.get("aliases", []) if isinstance(row, dict) else None
        if not (isinstance(row, dict) and isinstance(row.get("question"), str) and row["question"].strip()
                and isinstance(row.get("answer"), str) and row["answer"].strip()
                and isinstance(aliases, list) and all(isinstance(alias, str) for alias in aliases)):
            raise UserInputError(
                f"Line {number} of the knowledge questions file {location} is not an object with a non-empty "
                f"'question' and 'answer' (and optionally 'aliases', a list of strings), e.g. {QUESTIONS_EXAMPLE}. "
                "Fix or remove that line."
            )
        questions.append(KnowledgeQuestion(row["question"].strip(), row["answer"].strip(),
                                           tuple(alias.strip() for alias in aliases if alias.strip())))
    if not questions:
        raise UserInputError(f"The knowledge questions file {location} holds no questions. Add lines such as "
                             f"{QUESTIONS_EXAMPLE}, or leave finetune.knowledge_questions empty.")
    return questions
