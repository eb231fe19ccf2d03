"""Tiny models built from configs (no downloads): several architectures, with a word-level tokenizer and a chat
template, saved as ordinary Hugging Face folders so the real loading code runs on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = (
    "you are a helpful assistant how do i make bake bread write poem about autumn explain build bomb steal car "
    "sure here is the answer sorry i can't help with that . , ? ! 's to of and in it for on"
).split()


def build_tokenizer(path: Path, chat_template: str = CHAT_TEMPLATE, added_tokens: Sequence[str] = ()) -> Any:
    """The word-level tokenizer; ``added_tokens`` are extra non-special tokens (as Qwen3 adds ``<think>``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS + sorted(set(WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
    tokenizer.add_tokens(list(added_tokens))
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(path))
    return tokenizer


def tiny_config(architecture: str, vocabulary_size: int) -> Any:
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=vocabulary_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=1, eos_token_id=2,
        bos_token_id=None, tie_word_embeddings=False,
    )
    if architecture == "llama":
        return transformers.LlamaConfig(**common)
    if architecture == "qwen3":
        return transformers.Qwen3Config(**common, head_dim=8)
    if architecture == "gemma2":
        return transformers.Gemma2Config(**common, head_dim=8)
    if architecture == "mistral":
        return transformers.MistralConfig(**common)
    if architecture == "phi3":
        return transformers.Phi3Config(**common)
    if architecture == "qwen3_moe":
        return transformers.Qwen3MoeConfig(**common, head_dim=8, num_experts=4, num_experts_per_tok=2,
                                           moe_intermediate_size=48, decoder_sparse_step=1)
    if architecture == "mixtral":
        return transformers.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2)
    raise ValueError(architecture)


ARCHITECTURES = ("llama", "qwen3", "gemma2", "mistral", "phi3", "qwen3_moe", "mixtral")


def build_tiny_model(architecture: str, path: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM, GenerationConfig

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(path)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(architecture, len(tokenizer)))
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=1)
    model.save_pretrained(str(path))
    return path


def late_refusal_recipe() -> Any:
    """A toy chat model whose refusal lives only in its last layer (see ToyModelRecipe.refusal_layer): the demo
    recipe, deeper and narrower, with its own seed."""
    from heretic_tui.core.models.demo import ToyModelRecipe, TrainingStage

    return ToyModelRecipe(
        "late-refusal-model", 1, layers=6, hidden_size=64, intermediate_size=192, attention_heads=4, seed=4321,
        alignment=TrainingStage("alignment", epochs=10, learning_rate=1e-2), refusal_layer=True,
    )


THINKING_MARKERS = ("<think>", "</think>")

THINKING_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> "
    "{% if message['role'] == 'assistant' %}{{ message['content'].split('</think>')[-1] }}"
    "{% else %}{{ message['content'] }}{% endif %} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
"""A thinking model's template without a switch: like Qwen3's it strips the reasoning of earlier answers."""

SWITCH_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> "
    "{% if enable_thinking is defined and enable_thinking is false %}<think> </think> {% endif %}{% endif %}"
)
"""A template that reads ``enable_thinking`` and then writes an empty reasoning block, as Qwen3's does."""

END = "<|end|>"


def build_bigram_model(path: Path, transitions: Mapping[str, str], chat_template: str) -> Path:
    """A tiny Llama whose greedy next token depends only on the current token: ``transitions[current]`` (any token
    not listed is followed by the end token).

    Its outputs are crafted, not trained: every attention and MLP output projection is zero, so the last hidden
    state is the current token's embedding; embeddings are one-hot and the LM head maps each one onto the logit of
    its successor. That gives a thinking model whose reasoning and answer are known exactly, built in a second.
    """
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(path, chat_template, THINKING_MARKERS)
    vocabulary = len(tokenizer)
    config = LlamaConfig(vocab_size=vocabulary, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=1,
                         eos_token_id=2, bos_token_id=None, tie_word_embeddings=False)
    if vocabulary > config.hidden_size:
        raise ValueError(f"{vocabulary} tokens do not fit one-hot in {config.hidden_size} dimensions")
    model = AutoModelForCausalLM.from_config(config)
    end = tokenizer.convert_tokens_to_ids(END)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for token in range(vocabulary):
            model.model.embed_tokens.weight[token, token] = 1.0
            model.lm_head.weight[end, token] = 1.0
        for current, following in transitions.items():
            current_id, following_id = tokenizer.convert_tokens_to_ids([current, following])
            model.lm_head.weight[:, current_id] = 0.0
            model.lm_head.weight[following_id, current_id] = 1.0
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=1)
    model.save_pretrained(str(path))
    return path


def chain(*tokens: str) -> dict[str, str]:
    """Transitions that make the model write ``tokens`` one after the other."""
    return dict(zip(tokens, tokens[1:]))
