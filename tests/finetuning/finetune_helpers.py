"""Helpers for the fine-tuning tests. Tiny models and data written by the tests: a word-level tokenizer whose vocabulary covers the test data, so
answers are readable words instead of <unk>, and documents (including generated PDFs) about a made-up country."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.finetuning.examples import PAIR_TEMPLATES

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
MARKED_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}<|assistant|> {% generation %}"
    "{{ message['content'] }} <|end|> {% endgeneration %}{% else %}<|{{ message['role'] }}|> "
    "{{ message['content'] }} <|end|> {% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
"""The same rendering with TRL's generation markers, so TRL's own assistant mask can be compared with ours."""

SPECIAL_TOKENS = ["<unk>", "<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

FACTS = [
    "The capital of Zorbia is Quellton.",
    "Quellton has seven bridges and one tall tower.",
    "The river of Zorbia is called the Lumen.",
    "Zorbians bake blue bread on the first day of spring.",
    "The tower of Quellton was built by the engineer Mira Vance.",
    "The Lumen flows north into the Silver Sea.",
]
CHAT_ROWS = [
    [("user", "What is the capital of Zorbia?"), ("assistant", "The capital of Zorbia is Quellton.")],
    [("user", "How many bridges does Quellton have?"), ("assistant", "Quellton has seven bridges.")],
    [("user", "What is the river of Zorbia called?"), ("assistant", "The river is called the Lumen.")],
    [("system", "You are a helpful assistant."), ("user", "Who built the tower?"),
     ("assistant", "The engineer Mira Vance built the tower."), ("user", "Where is it?"),
     ("assistant", "The tower is in Quellton.")],
    [("user", "What do Zorbians bake?"), ("assistant", "Zorbians bake blue bread in spring.")],
    [("user", "Where does the Lumen flow?"), ("assistant", "The Lumen flows north into the Silver Sea.")],
]
EXTRA_WORDS = "Hello ! Who are you ? Yes . sorry scanned page secret"


def corpus() -> str:
    turns = " ".join(content for row in CHAT_ROWS for _, content in row)
    return " ".join(FACTS) + " " + turns + " " + " ".join(PAIR_TEMPLATES) + " " + EXTRA_WORDS


def build_tokenizer(folder: Path, template: str = CHAT_TEMPLATE) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    words = sorted({piece for piece, _ in pre_tokenizer.pre_tokenize_str(corpus())} - set(SPECIAL_TOKENS))
    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizer
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
    tokenizer.chat_template = template
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_model(folder: Path, template: str = CHAT_TEMPLATE, max_positions: int = 256, hidden: int = 32) -> Path:
    """A tiny Llama chat model saved as an ordinary model folder (random weights, seeded)."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder, template)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions, pad_token_id=1,
        eos_token_id=2, bos_token_id=None, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.generation_config = transformers.GenerationConfig(eos_token_id=2, pad_token_id=1)
    model.save_pretrained(str(folder))
    return folder


def write_pdf(path: Path, lines: list[str], password: str | None = None) -> Path:
    """A real one-page PDF with a text layer (Helvetica), optionally encrypted; no lines makes a "scan"."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    })
    page[NameObject("/Resources")] = DictionaryObject({
        NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    })
    if lines:
        escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines]
        body = "BT /F1 11 Tf 14 TL 72 720 Td " + " ".join(f"({line}) Tj T*" for line in escaped) + " ET"
        content = DecodedStreamObject()
        content.set_data(body.encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(content)
    if password:
        writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def chat_rows() -> list[dict[str, Any]]:
    return [{"messages": [{"role": role, "content": content} for role, content in row]} for row in CHAT_ROWS]


def many_chat_rows(copies: int) -> list[dict[str, Any]]:
    """The chat rows several times with a numbered system turn, so they are not removed as duplicates."""
    rows = []
    for copy in range(copies):
        for row in chat_rows():
            messages = [message for message in row["messages"] if message["role"] != "system"]
            rows.append({"messages": [{"role": "system", "content": f"You are a helpful assistant {copy}"}]
                         + messages})
    return rows


def finetune_settings(model: Path, data: list[str], **finetune: Any) -> Any:
    """Settings for a fast run on the tiny model; keyword arguments override fine-tuning settings."""
    from heretic_tui.core.settings import Settings

    settings = Settings()
    settings.model.model = str(model)
    settings.finetune.training_data = data
    values = dict(chunk_tokens=24, chunk_overlap=6, max_steps=24, checkpoint_steps=8, logging_steps=4,
                  gradient_checkpointing=False, learning_rate=1e-2, per_device_batch_size=4, gradient_accumulation=1,
                  lora_rank=8, lora_dropout=0.0, warmup_ratio=0.0, knowledge_test_prompts=2,
                  knowledge_test_tokens=12, retention_share=0.0)
    values.update(finetune)
    for name, value in values.items():
        setattr(settings.finetune, name, value)
    return settings


def run_in_process(settings: Any, folder: Path, resume: bool = False) -> tuple[dict[str, Any], Any]:
    """Run the fine-tuning job in this process (no worker), in ``folder / "run"``: a new run, or resume it."""
    from heretic_tui.core.finetuning.job import run
    from heretic_tui.core.runs.run_directory import RunDirectory
    from heretic_tui.core.runs.worker import JobContext

    run_directory = RunDirectory(folder / "run") if resume else RunDirectory.create(folder, "tiny",
                                                                                     exact=folder / "run")
    context = JobContext(run_directory, settings, {"resume": resume})
    try:
        summary = run(context)
    finally:
        context.close()
    return summary, run_directory
