"""Question/answer pairs from document chunks, so a chat model learns to answer from the documents, not recite them.

A model trained on "continue this passage" pairs learns to recite; asked about a fact in other words, it does not
use it. What teaches retrieval is many questions about each fact, phrased differently, each answered from the text.
Every sentence of a chunk is one fact. Two recipes write the questions:

- ``model``: a local model (the one being trained, or a teacher folder) is shown one sentence with the document's
  title and asked, in several phrasings, for a question that sentence answers, then (shown the sentence) for the
  answer. Decoding is greedy and batched, so the pairs are the same for the same model, data and seed. A grounding
  filter drops every answer whose content words are not in the chunk (a made-up answer teaches a made-up fact),
  every question that gives its own answer away, and every question that is not about its sentence: small models
  often echo the request ("What is the answer to the question?"), and such a pair teaches the model nothing it
  could be asked.
- ``template`` (the fallback, named as such in the plan and the report): questions made from sentence patterns
  without any model, each asking for the fact from another side: a few words of the sentence with its names and
  numbers hidden (the closest to a question a user asks), the sentence with one name or number blanked, and a
  name or number asking what the document says about it. The sentence is the answer. It is used when no
  generator is usable (no chat template, or a model whose first questions are all unusable), or for the facts the
  model's questions left uncovered.

A template pair's answer is the whole sentence, so what is learned is exactly what the document says. Passage
pairs (:func:`passage_pairs`) add questions about a document's subject answered with a whole window of it. Pairs keep the index of their fact, so held-out questions (for the knowledge test) are chosen only from
facts that are still trained through another of their questions.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

RECIPE_MODEL = "model"
RECIPE_TEMPLATE = "template"

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
WORD = re.compile(r"[\w'-]+", re.UNICODE)
NUMBER_PHRASE = re.compile(r"\b\d[\d,.]*\d\b(?:\s+(?:metres|meters|kilometres|years|people|days|tonnes|percent))?|\b\d\b")
NAME_PHRASE = re.compile(r"\b[A-Z][\w'-]+(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'-]+)*")
STOP_WORDS = frozenset(
    "a an the of and or in on at to for from by with as is are was were be been it its this that these those "
    "which who whom what when where why how there their they them he she his her him we our you your i my me "
    "do does did has have had not no yes also than then so such can could will would shall should may might "
    "into over under about after before during between each every all some any most more other one".split()
)
MINIMUM_SENTENCE_WORDS = 5
GROUNDING_THRESHOLD = 0.8
"""Share of an answer's content words that must appear in its chunk for the answer to count as supported by it."""

QUESTION_REQUESTS = (
    "Write one question that is answered by this sentence. Reply with the question only.",
    "Ask a quiz question whose answer is stated in this sentence. Reply with the question only.",
    "Write a question a reader could answer from this sentence alone, using other words than the sentence. Reply "
    "with the question only.",
    "What would someone ask to get the fact in this sentence? Reply with one question only.",
)
"""Phrasings of the request for a question; each gives another paraphrase of the question about the same fact."""

ANSWER_REQUEST = "Answer the question in one sentence, using only the text above."

PROMPT_WORDS = frozenset("question questions answer answers answered sentence sentences passage text quiz reply "
                         "fact".split())
"""Words of the requests themselves: a question that uses one asks about the prompt ("What is the answer to this
question?", "What does the sentence say?"), not about the document's facts, which never need these words."""

TEMPLATE_QUESTIONS = (
    "{title}: {blanked}?",
    "About {title}, {blanked}?",
    "Fill in the blank about {title}: {gapped}",
)
"""Template-recipe cloze questions; ``blanked`` is the sentence with its name or number replaced by "what",
``gapped`` the sentence with a blank."""

CUE_QUESTIONS = (
    "What does the text about {title} say about {cue}?",
    "What do you know about the {cue} of {title}?",
    "Tell me about {title}: {cue}?",
)
"""Template-recipe questions that give only a few words of the sentence (``cue``) and leave the rest, the name or
number included, to be recalled: a cloze question shows the whole sentence but its blank, so its answer is mostly
copied from the question, while a real question ("What is the tallest peak on Qaranth?") gives a few words."""

REVERSE_QUESTION = "What does the text about {title} say about {span}?"
"""The other way round: from a name or number of the sentence to what the document says about it."""

PROBE_QUESTIONS = 16
"""Questions the generator writes first (one batch); when not one of them is usable the model cannot write
questions (SmolLM2-135M-Instruct echoes the request for nearly every sentence), and the rest of its pass, minutes
on a CPU, is skipped for the template fallback."""

CUE_WORDS = 3
"""Content words of the sentence that a cue question gives (the first ones that are neither a name or number
asked for nor the title): about as many as a real question about one fact shares with its sentence."""


PASSAGE_QUESTIONS = (
    "Tell me about {title}.",
    "What do you know about {title}?",
    "What does the text about {title} say?",
    "Describe {title}.",
)
"""Questions whose answer is a whole document window (see :func:`passage_pairs`)."""
RECIPE_PASSAGE = "passage"
LEADING_HEADINGS = re.compile(r"\A(?:\s*#[^\n]*\n)+")


@dataclass(frozen=True)
class QuestionAnswer:
    """One synthesized pair; ``key`` is the short answer the knowledge test looks for in a reply."""

    question: str
    answer: str
    key: str
    fact: int
    recipe: str
    origin: str


@dataclass(frozen=True)
class Fact:
    """One sentence of a chunk, the chunk it comes from and the document's title."""

    sentence: str
    chunk: str
    title: str
    origin: str


def chunk_facts(title: str, chunks: Sequence[str], origin: str, seen: set[str]) -> list[Fact]:
    """The sentences of the chunks as facts; a sentence already seen (chunks overlap) is not a new fact."""
    facts = []
    for chunk in chunks:
        for sentence in SENTENCE_BREAK.split(chunk):
            sentence = sentence.strip().lstrip("#*- ").strip()
            if len(WORD.findall(sentence)) < MINIMUM_SENTENCE_WORDS or sentence in seen:
                continue
            seen.add(sentence)
            facts.append(Fact(sentence, chunk, title, origin))
    return facts


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning (no stop words), for grounding and answer checks."""
    return [word for word in (match.group(0).lower().strip("'-") for match in WORD.finditer(text))
            if word and word not in STOP_WORDS]


def is_grounded(answer: str, chunk: str) -> bool:
    """Whether the answer says only what the chunk says: most of its content words, and all its numbers, are there."""
    words = content_words(answer)
    if not words:
        return False
    in_chunk = set(content_words(chunk))
    numbers = [word for word in words if any(character.isdigit() for character in word)]
    if any(number not in in_chunk for number in numbers):
        return False
    return sum(word in in_chunk for word in words) / len(words) >= GROUNDING_THRESHOLD


def gives_answer_away(question: str, key: str) -> bool:
    """A question that already holds its whole short answer teaches nothing to retrieve."""
    key_words = content_words(key)
    return bool(key_words) and set(key_words) <= set(content_words(question))


def answer_spans(sentence: str, title: str) -> list[str]:
    """Names and numbers of a sentence that a question can ask for (not the title, not the first word alone)."""
    title_words = set(content_words(title))
    spans = []
    for pattern in (NUMBER_PHRASE, NAME_PHRASE):
        for match in pattern.finditer(sentence):
            span = match.group(0).strip()
            if pattern is NAME_PHRASE and match.start() == 0 and " " not in span:
                continue
            words = set(content_words(span))
            if not words or words <= title_words or span in spans:
                continue
            spans.append(span)
    return spans


def cue_words(body: str, spans: Sequence[str], title: str) -> str:
    """The first few content words of a sentence that are not in its names and numbers or the title."""
    hidden = set(content_words(" ".join(spans))) | set(content_words(title))
    return " ".join([word for word in content_words(body) if word not in hidden][:CUE_WORDS])


def template_pairs(fact: Fact, index: int, per_fact: int, generator: random.Random) -> list[QuestionAnswer]:
    """The template recipe for one fact, the sentence as the answer of every question, in this order (the first
    ``per_fact`` are kept): a cue question, a cloze question for each name or number, a question from each name
    or number, then the other cue phrasings; each kind asks for the fact from another side."""
    body = fact.sentence.rstrip(".!? ")
    spans = answer_spans(body, fact.title)
    cue = cue_words(body, spans, fact.title)
    cues = list(CUE_QUESTIONS)
    clozes = list(TEMPLATE_QUESTIONS)
    generator.shuffle(cues)
    generator.shuffle(clozes)
    key = spans[0] if spans else fact.sentence
    questions: list[tuple[str, str]] = []
    if cue:
        questions.append((cues[0].format(title=fact.title, cue=cue), key))
    for number, span in enumerate(spans):
        questions.append((clozes[number % len(clozes)].format(
            title=fact.title, blanked=body.replace(span, "what", 1), gapped=body.replace(span, "____", 1) + "."),
            span))
    questions.extend((REVERSE_QUESTION.format(title=fact.title, span=span), fact.sentence) for span in spans)
    if cue:
        questions.extend((template.format(title=fact.title, cue=cue), key) for template in cues[1:])
    if not questions:
        questions.append((REVERSE_QUESTION.format(title=fact.title, span=body), fact.sentence))
    unique = list(dict.fromkeys(questions))
    return [QuestionAnswer(question, fact.sentence, answer_key, index, RECIPE_TEMPLATE, fact.origin)
            for question, answer_key in unique[:max(per_fact, 1)]]


def passage_pairs(facts: Sequence[Fact], per_passage: int, first_index: int) -> list[QuestionAnswer]:
    """Pairs that ask about a document's subject and answer with a whole window of it, ``per_passage`` each.

    A sentence alone often names its subject only as "it" or "she"; a question pair teaches that sentence under
    the title in its question, but the window teaches the sentences together, each in the context that says what
    it is about (training on the text itself beside the questions is what lets a model use its facts when asked
    in other words). Each window has its own fact index, after every sentence's; the pairs are added after the
    hold-out (see ``data.prepare_data``), so none of them is ever a knowledge-test question.
    """
    windows = dict.fromkeys((fact.title, fact.chunk, fact.origin) for fact in facts)
    pairs = []
    for number, (title, chunk, origin) in enumerate(windows):
        text = LEADING_HEADINGS.sub("", chunk).strip()
        if not text:
            continue
        for round_ in range(per_passage):
            question = PASSAGE_QUESTIONS[(number + round_) % len(PASSAGE_QUESTIONS)].format(title=title)
            pairs.append(QuestionAnswer(question, text, title, first_index + number, RECIPE_PASSAGE, origin))
    return pairs


def question_prompt(fact: Fact, request: str) -> list[dict[str, str]]:
    """The question is asked from the sentence and the document's title alone, like the answer: the question is
    about that sentence, and a prompt without the whole chunk is about a fifth as long, which makes this pass (the
    slowest of the data step: one generation per question) several times faster on a CPU."""
    return [{"role": "user", "content": f"From \"{fact.title}\":\nSentence: \"{fact.sentence}\"\n\n{request}"}]


def is_about_fact(question: str, fact: Fact) -> bool:
    """Whether a written question asks about its fact: it shares a content word with the sentence or the title,
    and it is not about the prompt (see PROMPT_WORDS)."""
    words = set(content_words(question))
    return not words & PROMPT_WORDS and bool(words & set(content_words(f"{fact.title} {fact.sentence}")))


def answer_prompt(fact: Fact, question: str) -> list[dict[str, str]]:
    """The answer is asked from the fact's sentence alone (with the document's title for context): the sentence
    holds the answer, and a prompt a fifth as long makes this pass several times faster than the question pass."""
    return [{"role": "user", "content": f"From \"{fact.title}\": {fact.sentence}\n\nQuestion: {question}\n\n"
                                        f"{ANSWER_REQUEST}"}]


def first_line(text: str) -> str:
    """The first non-empty line of a reply, without a "Question:"/"Answer:" label or quotes around it."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"^(?:Q(?:uestion)?|A(?:nswer)?)\s*[:.]\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip('"').strip()


Generate = Callable[[list[list[dict[str, str]]]], list[str]]
"""Greedy replies of the generator model to a batch of chat prompts."""


def model_pairs(facts: Sequence[Fact], first_index: int, per_fact: int, generate: Generate,
                check_cancelled: Callable[[], None] | None = None) -> tuple[list[QuestionAnswer], dict[str, int]]:
    """The model recipe for the facts: grounded pairs, and counts of what the filters dropped (questions that are
    not about their fact, answers not grounded in the chunk or given away by their question) and of the questions
    never asked because the first ones were all unusable."""
    requests = [(number, fact, QUESTION_REQUESTS[round_ % len(QUESTION_REQUESTS)])
                for round_ in range(per_fact) for number, fact in enumerate(facts)]
    asked: list[tuple[int, Fact, str]] = []
    counts = {"off_topic_questions_dropped": 0, "ungrounded_dropped": 0, "questions_not_asked": 0}
    for start, end in ((0, PROBE_QUESTIONS), (PROBE_QUESTIONS, len(requests))):
        if start >= len(requests):
            break
        if start and not asked:
            counts["questions_not_asked"] = len(requests) - start
            break
        part = requests[start:end]
        questions = generate([question_prompt(fact, request) for _, fact, request in part])
        if check_cancelled is not None:
            check_cancelled()
        for (number, fact, _), reply in zip(part, questions):
            question = first_line(reply)
            if not (question.endswith("?") and len(WORD.findall(question)) >= 3):
                continue
            if is_about_fact(question, fact):
                asked.append((number, fact, question))
            else:
                counts["off_topic_questions_dropped"] += 1
    answers = generate([answer_prompt(fact, question) for _, fact, question in asked]) if asked else []
    if check_cancelled is not None:
        check_cancelled()
    pairs, seen = [], set()
    for (number, fact, question), reply in zip(asked, answers):
        answer = first_line(reply)
        if not is_grounded(answer, fact.chunk) or gives_answer_away(question, answer):
            counts["ungrounded_dropped"] += 1
            continue
        if (number, question.lower()) in seen:
            continue
        seen.add((number, question.lower()))
        pairs.append(QuestionAnswer(question, answer, answer, first_index + number, RECIPE_MODEL, fact.origin))
    return pairs, counts


def synthesize(facts: Sequence[Fact], per_fact: int, seed: int, generate: Generate | None,
               check_cancelled: Callable[[], None] | None = None) -> tuple[list[QuestionAnswer], dict[str, Any]]:
    """Pairs for every fact: the model's grounded ones, template ones for facts left without any (or for all facts
    when there is no generator); with a summary of what each recipe gave, for the plan and the report."""
    generator = random.Random(seed)
    pairs: list[QuestionAnswer] = []
    counts = {"off_topic_questions_dropped": 0, "ungrounded_dropped": 0, "questions_not_asked": 0}
    if generate is not None and facts:
        pairs, counts = model_pairs(facts, 0, per_fact, generate, check_cancelled)
    covered = {pair.fact for pair in pairs}
    fallback = [pair for index, fact in enumerate(facts) if index not in covered
                for pair in template_pairs(fact, index, per_fact, generator)]
    pairs.extend(fallback)
    pairs.sort(key=lambda pair: pair.fact)
    if generate is None:
        recipe = "template fallback (no question generator usable)"
    elif counts["questions_not_asked"]:
        recipe = (f"template fallback (the model's first {PROBE_QUESTIONS} questions were all unusable, so it wrote "
                  "no more)")
    else:
        recipe = f"questions written by the model, template fallback for {len({p.fact for p in fallback})} facts"
    summary = {
        "recipe": recipe,
        "facts": len(facts),
        "model_pairs": len(pairs) - len(fallback),
        "template_pairs": len(fallback),
        **counts,
    }
    return pairs, summary


def hold_out(pairs: Sequence[QuestionAnswer], count: int, seed: int
             ) -> tuple[list[QuestionAnswer], list[QuestionAnswer]]:
    """(training pairs, held-out pairs): at most one question per fact is held out, and only from facts that keep
    another question in training, so a held-out question tests a paraphrase of something the model was taught."""
    by_fact: dict[int, list[int]] = {}
    for position, pair in enumerate(pairs):
        by_fact.setdefault(pair.fact, []).append(position)
    generator = random.Random(seed)
    candidates = [positions for positions in by_fact.values() if len(positions) >= 2]
    generator.shuffle(candidates)
    held = {generator.choice(positions) for positions in candidates[:count]}
    held_questions = {pairs[position].question.lower() for position in held}
    train = [pair for position, pair in enumerate(pairs)
             if position not in held and pair.question.lower() not in held_questions]
    return train, [pairs[position] for position in sorted(held)]
