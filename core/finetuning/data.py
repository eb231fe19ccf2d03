"""From sources to a cleaned, split, previewed data set that is stored in the run folder.

The prepared examples are written to ``RUN_DIR/data`` before training starts, and a resumed run reads them back
from there instead of re-reading the user's files: a checkpoint is only meaningful with the exact examples (and
split) it was trained on, and the user may have edited their folder since.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.finetuning.evaluation import chat_replies
from heretic_tui.core.finetuning.examples import (
    MODE_TEXT,
    build_examples,
    conversation_example,
    example_messages,
    resolve_mode,
    token_windows,
)
from heretic_tui.core.finetuning.knowledge import KnowledgeQuestion, read_questions
from heretic_tui.core.finetuning.retention import GENERAL_PROMPTS, mix_retention, retention_count
from heretic_tui.core.finetuning.synthesis import (
    Fact,
    Generate,
    QuestionAnswer,
    chunk_facts,
    hold_out,
    passage_pairs,
    synthesize,
)
from heretic_tui.core.finetuning.sources import KIND_INSTRUCTION, Conversation, Document, SourceData, read_sources
from heretic_tui.core.atomic_files import (
    read_json_object,
    storage_errors,
    write_json_atomically,
    write_text_atomically,
)
from heretic_tui.core.settings import FinetuneSettings, HubSettings

DATA_FOLDER = "data"
TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
SUMMARY_FILE = "summary.json"

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200e\u200f\ufeff]")
TRAILING_SPACE = re.compile(r"[ \t]+\n")
BLANK_LINES = re.compile(r"\n{3,}")
PREVIEW_CHARACTERS = 400
QUESTION_TOKENS = 40
ANSWER_TOKENS = 48
RETENTION_TOKENS = 96
SENTENCE_END_CHARACTERS = ".!?"
HEADING = re.compile(r"\s*#{1,6}\s+(.+)")


@dataclass
class PreparedData:
    """The examples of a run and how they came to be (shown to the user and kept in report.json)."""

    mode: str
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        """Write the examples, then the summary: a folder with a summary was written completely."""
        with storage_errors(folder, "write the prepared examples into"):
            folder.mkdir(parents=True, exist_ok=True)
        for name, rows in ((TRAIN_FILE, self.train), (VALIDATION_FILE, self.validation)):
            write_text_atomically(folder / name, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        write_json_atomically(folder / SUMMARY_FILE, {"mode": self.mode, **self.summary})

    @classmethod
    def load(cls, folder: Path) -> PreparedData | None:
        """The data saved by an earlier attempt of this run, or None when it was not saved completely (or was
        damaged since), so the caller prepares it again from the sources."""
        summary = read_json_object(folder / SUMMARY_FILE)
        if not isinstance(summary.get("mode"), str):
            return None
        rows = {}
        try:
            for name in (TRAIN_FILE, VALIDATION_FILE):
                with open(folder / name, encoding="utf-8") as handle:
                    rows[name] = [json.loads(line) for line in handle if line.strip()]
        except (OSError, ValueError):
            return None
        if not all(isinstance(row, dict) for name in rows for row in rows[name]):
            return None
        mode = summary.pop("mode")
        return cls(mode, rows[TRAIN_FILE], rows[VALIDATION_FILE], summary)


def clean_text(text: str) -> str:
    """Drop control and zero-width characters, normalise line ends and Unicode, squeeze runs of blank lines."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = CONTROL_CHARACTERS.sub("", text)
    text = TRAILING_SPACE.sub("\n", text)
    return BLANK_LINES.sub("\n\n", text).strip()


def clean_sources(data: SourceData) -> SourceData:
    """The same data with every text cleaned; documents and conversations left empty by cleaning are dropped."""
    documents = [
        Document(item.title, cleaned, item.origin)
        for item in data.documents
        if (cleaned := clean_text(item.text))
    ]
    conversations = []
    for item in data.conversations:
        turns = tuple((role, clean_text(content)) for role, content in item.messages)
        if any(role == "assistant" and content for role, content in turns):
            conversations.append(Conversation(turns, item.origin, item.kind))
    return SourceData(documents, conversations, data.reports, data.skipped, data.ignored)


def remove_duplicates(examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Examples with exact duplicates removed (the first one is kept), and how many were removed."""
    seen: set[str] = set()
    unique = []
    for example in examples:
        key = json.dumps(example, sort_keys=True, ensure_ascii=False)
        if key in seen:
            continue
        seen.add(key)
        unique.append(example)
    return unique, len(examples) - len(unique)


def split_examples(
    examples: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded train/validation split; at least one example each way when there is a fraction and two examples."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    count = round(len(examples) * fraction)
    if fraction > 0 and len(examples) >= 2:
        count = min(max(count, 1), len(examples) - 1)
    else:
        count = 0
    validation = sorted(order[:count])
    chosen = set(validation)
    return [examples[index] for index in range(len(examples)) if index not in chosen], [
        examples[index] for index in validation
    ]


def render_example(tokenizer: Any, example: dict[str, Any]) -> str:
    """An example as the model will see it: chat examples through the model's chat template."""
    messages = example_messages(example)
    if messages is None:
        return example["text"]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def preview(tokenizer: Any, examples: list[dict[str, Any]], count: int) -> list[str]:
    """The first few examples rendered, shortened to one readable line each."""
    lines = []
    for example in examples[:count]:
        text = " ".join(render_example(tokenizer, example).split("\n"))
        lines.append(text if len(text) <= PREVIEW_CHARACTERS else text[:PREVIEW_CHARACTERS] + " ...")
    return lines


def format_summary(data: SourceData) -> list[dict[str, Any]]:
    """One entry per detected format: how many sources and items had it."""
    formats: dict[str, dict[str, Any]] = {}
    for report in data.reports:
        entry = formats.setdefault(report.format, {"format": report.format, "sources": 0, "items": 0})
        entry["sources"] += 1
        entry["items"] += report.items
    return list(formats.values())


def question_generator(settings: FinetuneSettings, model: Any | None, tokenizer: Any) -> Generate | None:
    """The model that writes questions for the 'questions' recipe, or None for the template fallback."""
    choice = settings.question_generator
    if choice == "template" or model is None:
        return None
    if not getattr(tokenizer, "chat_template", None):
        if choice == "model":
            raise UserInputError(
                "finetune.question_generator is 'model', but the model that would write the questions has no chat "
                "template. Set finetune.question_model to a local chat model folder, or set "
                "finetune.question_generator to 'template' (or 'auto', which falls back to templates)."
            )
        return None

    def generate(prompts: list[list[dict[str, str]]]) -> list[str]:
        if not prompts:
            return []
        tokens = QUESTION_TOKENS if "Sentence:" in prompts[0][-1]["content"] else ANSWER_TOKENS
        return chat_replies(model, tokenizer, prompts, tokens)

    return generate


def document_facts(documents: list[Document], tokenizer: Any, window: tuple[int, int]) -> list[Fact]:
    """Every sentence of every document window, once, in document order; a document that opens with a Markdown
    heading is called by it in the questions (its file name is often an abbreviation of it)."""
    seen: set[str] = set()
    facts = []
    for document in documents:
        windows = token_windows(tokenizer, document.text, window[0], window[1])
        heading = HEADING.match(document.text)
        title = heading.group(1).strip() if heading else document.title
        facts.extend(chunk_facts(title, windows, document.origin, seen))
    return facts


def pair_example(pair: QuestionAnswer, mode: str) -> dict[str, Any]:
    conversation = Conversation((("user", pair.question), ("assistant", pair.answer)), pair.origin, KIND_INSTRUCTION)
    return conversation_example(conversation, mode)


def complete_sentences(text: str) -> str:
    """A reply cut by the token limit, shortened to its last whole sentence (a cut answer teaches cutting off)."""
    text = text.strip()
    if not text or text[-1] in SENTENCE_END_CHARACTERS:
        return text
    last = max(text.rfind(character) for character in SENTENCE_END_CHARACTERS)
    return text[:last + 1] if last > 0 else ""


def retention_examples(settings: FinetuneSettings, mode: str, tokenizer: Any, model: Any | None,
                       check_cancelled: Callable[[], None] | None, hub: HubSettings | None, needed: int
                       ) -> tuple[list[dict[str, Any]], str]:
    """General chat examples to mix in, and where they came from (for the summary). The built-in set answers only
    the ``needed`` prompts (a seeded choice): each answer is a generation, and a dozen documents need a handful."""
    if settings.retention_share <= 0:
        return [], "none (finetune.retention_share is 0)"
    if mode == MODE_TEXT:
        return [], "none (the text mode trains on the text itself)"
    if settings.retention_data:
        data = clean_sources(read_sources(settings.retention_data, check_cancelled, hub))
        conversations = data.conversations
        origin = f"{len(conversations)} conversations from {', '.join(settings.retention_data)}"
    elif model is not None and getattr(tokenizer, "chat_template", None):
        chosen = random.Random(settings.finetune_seed).sample(GENERAL_PROMPTS, min(needed, len(GENERAL_PROMPTS)))
        prompts = [[{"role": "user", "content": prompt}] for prompt in chosen]
        replies = [complete_sentences(reply) for reply in chat_replies(model, tokenizer, prompts, RETENTION_TOKENS)]
        conversations = [Conversation((("user", prompt[0]["content"]), ("assistant", reply)), "built-in",
                                      KIND_INSTRUCTION) for prompt, reply in zip(prompts, replies) if reply]
        origin = f"built-in: {len(conversations)} everyday prompts answered by the model before training"
    else:
        return [], "none (the built-in set needs the model and its chat template)"
    return [conversation_example(item, mode) for item in conversations], origin


def prepare_data(
    settings: FinetuneSettings,
    tokenizer: Any,
    window: tuple[int, int],
    check_cancelled: Callable[[], None] | None = None,
    hub: HubSettings | None = None,
    model: Any | None = None,
    teacher: tuple[Any, Any] | None = None,
) -> PreparedData:
    """Read, detect, clean, build examples (synthesizing questions), remove duplicates, hold out, mix in retention
    and split; raises UserInputError for bad input. ``model`` writes questions (unless a ``teacher`` model and
    tokenizer does) and retention answers; without one the template fallback is used and only a user retention
    source is mixed in."""
    if settings.knowledge_questions:
        read_questions(settings.knowledge_questions)
    data = clean_sources(read_sources(settings.training_data, check_cancelled, hub))
    mode = resolve_mode(settings.training_mode, data, bool(getattr(tokenizer, "chat_template", None)))
    questions = mode != MODE_TEXT and settings.document_recipe == "questions" and bool(data.documents)
    examples = build_examples(data, mode, tokenizer, window[0], window[1], settings.finetune_seed,
                              include_documents=not questions)
    synthesis: dict[str, Any] = {}
    held_out: list[QuestionAnswer] = []
    if questions:
        generate = question_generator(settings, *(teacher or (model, tokenizer)))
        facts = document_facts(data.documents, tokenizer, window)
        pairs, synthesis = synthesize(facts, settings.questions_per_fact, settings.finetune_seed, generate,
                                      check_cancelled)
        # A questions file is the knowledge test then: holding pairs out too would only take them from training.
        held_out_count = 0 if settings.knowledge_questions else settings.held_out_questions
        pairs, held_out = hold_out(pairs, held_out_count, settings.finetune_seed)
        passages = passage_pairs(facts, settings.passage_questions, len(facts))
        synthesis["passage_pairs"] = len(passages)
        pairs += passages
        examples = [pair_example(pair, mode) for pair in pairs] + examples
    examples, duplicates = remove_duplicates(examples)
    if not examples:
        raise UserInputError(
            f"The training data ({', '.join(settings.training_data)}) gave no training examples in the "
            f"'{mode}' mode: every text was too short or empty after cleaning. Add longer documents, or use "
            "--mode text."
        )
    knowledge_count = len(examples)
    retention, retention_origin = retention_examples(settings, mode, tokenizer, model, check_cancelled, hub,
                                                     retention_count(knowledge_count, settings.retention_share))
    examples = mix_retention(examples, retention, settings.retention_share, settings.finetune_seed)
    train, validation = split_examples(examples, settings.validation_fraction, settings.finetune_seed)
    recipe = synthesis.get("recipe") if questions else (
        "continue-the-passage pairs" if mode != MODE_TEXT and data.documents else f"{mode} examples as given")
    summary = {
        "formats": format_summary(data),
        "sources": [asdict(report) for report in data.reports],
        "skipped": [{"path": path, "reason": reason} for path, reason in data.skipped],
        "ignored_files": data.ignored,
        "documents": len(data.documents),
        "conversations": len(data.conversations),
        "duplicates_removed": duplicates,
        "recipe": recipe,
        "synthesis": synthesis,
        "held_out": [asdict(KnowledgeQuestion(pair.question, pair.key)) for pair in held_out],
        "retention": {"source": retention_origin, "examples": len(examples) - knowledge_count,
                      "share": settings.retention_share},
    }
    return PreparedData(mode, train, validation, summary)


def data_metrics(prepared: PreparedData) -> dict[str, Any]:
    """The figures of the data step, for a Metrics event."""
    formats = ", ".join(f"{entry['format']} ({entry['items']})" for entry in prepared.summary.get("formats", []))
    return {
        "mode": prepared.mode,
        "formats": formats,
        "train_examples": len(prepared.train),
        "validation_examples": len(prepared.validation),
        "duplicates_removed": prepared.summary.get("duplicates_removed", 0),
        "skipped_files": len(prepared.summary.get("skipped", [])),
        "recipe": prepared.summary.get("recipe", ""),
        "held_out_questions": len(prepared.summary.get("held_out", [])),
        "retention_examples": prepared.summary.get("retention", {}).get("examples", 0),
    }
