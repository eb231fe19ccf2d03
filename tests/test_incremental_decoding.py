"""The answer decoded a token at a time is the whole decode, for the decoders chat models use, so verdicts after
each token are the same as when the whole answer was decoded every time."""

from __future__ import annotations

import random
from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from model_factory import build_tokenizer

from heretic_tui.core.models.incremental_decoding import IncrementalText, streaming_backend

CORPUS = [
    "Sure, here is how you bake bread: first mix the flour with water, then knead it.",
    "I'm sorry, but I can't help with that. It is illegal and dangerous.",
    "Ça va? Très bien, merci! 你好世界。 Größe, naïve café — «quotes» and ‘single’ ones…",
    "Emoji 🙂🚀 and symbols ∑∫√ in a sentence.\n\nA second paragraph\twith a tab.",
]


def sentencepiece_style(decoder: Any) -> PreTrainedTokenizerFast:
    """A byte-fallback BPE tokenizer with a ▁ word marker (the Llama 2, Mistral and Gemma layout), trained here
    on a few sentences so that characters outside them fall back to bytes."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens],
                                  initial_alphabet=list("abcdefghijklmnopqrstuvwxyz▁"))
    tokenizer.train_from_iterator([CORPUS[0], CORPUS[1]], trainer)
    tokenizer.decoder = decoder
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)


def byte_level() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (the GPT-2, Llama 3, Qwen and SmolLM layout)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS[:2], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|end|>", clean_up_tokenization_spaces=True)


def word_level() -> Any:
    """The test models' word-level tokenizer, with an added (non-special) thinking marker."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        return build_tokenizer(Path(folder), added_tokens=["<think>", "</think>"])


TOKENIZERS = {
    "word level with added tokens": word_level,
    "byte-level BPE (cleanup skipped for BPE)": byte_level,
    "metaspace": lambda: sentencepiece_style(decoders.Metaspace()),
    "llama 2 style": lambda: sentencepiece_style(decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])),
}


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_every_prefix_decodes_as_the_whole_decode(name: str) -> None:
    tokenizer = TOKENIZERS[name]()
    backend = streaming_backend(tokenizer)
    assert backend is not None, "these tokenizers decode in Rust, so they stream"
    rng = random.Random(7)
    sequences = [tokenizer.encode(text, add_special_tokens=False) for text in CORPUS]
    specials = list(tokenizer.all_special_ids)
    for _ in range(60):
        sequence = [rng.randrange(len(tokenizer)) for _ in range(rng.randint(1, 30))]
        for _ in range(rng.randint(0, 2)):
            sequence.insert(rng.randrange(len(sequence) + 1), rng.choice(specials))
        sequences.append(sequence)
    for number, sequence in enumerate(sequences):
        text = IncrementalText(tokenizer, backend)
        given = 0
        while given < len(sequence):
            step = rng.randint(1, 3)
            text.extend(sequence[given:given + step])
            given = min(given + step, len(sequence))
            whole = tokenizer.decode(sequence[:given], skip_special_tokens=True)
            if text.text != whole:
                assert whole.endswith("\ufffd") and whole.rstrip("\ufffd") == text.text.rstrip("\ufffd"), \
                    f"{name}: {sequence[:given]} streams as {text.text!r}, decodes as {whole!r}"
        if number < len(CORPUS):
            assert text.text == tokenizer.decode(sequence, skip_special_tokens=True) == \
                tokenizer.decode(tokenizer.encode(CORPUS[number], add_special_tokens=False), skip_special_tokens=True)


def test_a_tokenizer_that_cleans_up_spaces_decodes_whole() -> None:
    tokenizer = Tokenizer(models.WordPiece({"[UNK]": 0, "hello": 1, ",": 2, "world": 3}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", clean_up_tokenization_spaces=True)
    assert streaming_backend(wrapped) is None, "transformers cleans WordPiece text up after the Rust decode"
    text = IncrementalText(wrapped, None)
    text.extend([1, 2])
    text.extend([3])
    assert text.text == wrapped.decode([1, 2, 3], skip_special_tokens=True) == "hello, world"


def test_a_tokenizer_without_a_rust_backend_decodes_whole() -> None:
    class Plain:
        def decode(self, tokens: list[int], skip_special_tokens: bool = False) -> str:
            return "-".join(str(token) for token in tokens)

    assert streaming_backend(Plain()) is None
    text = IncrementalText(Plain(), None)
    text.extend([1, 2])
    assert text.text == "1-2"
    text.extend([3])
    assert text.text == "1-2-3"
