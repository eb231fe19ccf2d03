"""Keeping the model's general behaviour while it learns the documents: retention examples and a general-text check.

Training only on questions about the user's documents pulls every answer towards them (a model that answers
"What is the capital of France?" with a fact about the documents). A share of general chat examples in the
training set counters that. The built-in set is a list of everyday prompts answered by the model itself before
training (greedy, so deterministic): training on its own answers asks it to keep answering as it did, with no
writing style of ours mixed in, and works offline for any chat model. A user source (``finetune.retention_data``)
replaces the built-in set with the user's own conversations.

The general-text passages are what the before/after perplexity is measured on: ordinary encyclopaedic prose about
well-known things, so a rise means the fine-tune cost the model some of its general language ability.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

GENERAL_PROMPTS = (
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Give me three tips for sleeping better.",
    "What is photosynthesis?",
    "How many days are there in a leap year?",
    "Write a short poem about autumn.",
    "What is the difference between weather and climate?",
    "Translate 'good morning' into Spanish.",
    "How do I boil an egg?",
    "What is 12 multiplied by 7?",
    "Who wrote Romeo and Juliet?",
    "Suggest a name for a pet goldfish.",
    "What does a thermometer measure?",
    "Explain what a noun is, with an example.",
    "Why do we have seasons on Earth?",
    "What are the three primary colours of light?",
    "Give me a simple recipe for a green salad.",
    "What is the largest planet in the solar system?",
    "How can I improve my handwriting?",
    "What is the boiling point of water at sea level?",
    "Summarise the story of Cinderella in three sentences.",
    "What is a prime number?",
    "Name three animals that live in the ocean.",
    "How do plants get water?",
    "What is the purpose of a seatbelt?",
    "Write a polite email declining a meeting invitation.",
    "What is the speed of light, roughly?",
    "How does a bicycle stay upright when it moves?",
    "What is the main ingredient of guacamole?",
    "Explain what a computer virus is.",
    "Hello! How are you today?",
    "What should I pack for a day at the beach?",
    "Why is exercise good for your health?",
    "What language is spoken in Brazil?",
    "Describe the water cycle briefly.",
    "What is the opposite of 'generous'?",
    "How many continents are there, and what are they?",
    "What is the role of the heart in the human body?",
    "Give me a fun fact about elephants.",
    "How do I convert Celsius to Fahrenheit?",
)
"""Everyday prompts of the built-in retention set (the answers are the model's own, written before training)."""

GENERAL_TEXT = (
    "The Pacific Ocean is the largest and deepest of the world's five oceans. It stretches from the Arctic in the "
    "north to the Southern Ocean in the south and is bounded by Asia and Australia in the west and the Americas in "
    "the east. The ocean covers about a third of the surface of the Earth, more than all the land put together.",
    "Bread is one of the oldest prepared foods. It is usually made from a dough of flour and water, often with "
    "yeast to make it rise, and then baked in an oven. Across the world people eat many kinds of bread, from flat "
    "breads cooked on hot stones to tall loaves with a thick crust.",
    "William Shakespeare was an English playwright and poet, widely regarded as the greatest writer in the English "
    "language. He wrote about forty plays, including Hamlet, Macbeth and Romeo and Juliet, and more than one "
    "hundred and fifty sonnets. His works have been translated into every major language.",
    "A computer is a machine that can be programmed to carry out sequences of arithmetic or logical operations "
    "automatically. Modern computers can perform a wide range of tasks, from sending messages and playing music "
    "to controlling factories and helping scientists simulate the weather.",
    "The heart is a muscular organ that pumps blood through the body. Blood carries oxygen and nutrients to the "
    "tissues and takes away waste products such as carbon dioxide. In humans the heart has four chambers and beats "
    "about one hundred thousand times a day.",
    "Mount Everest is the highest mountain on Earth above sea level. It lies in the Himalayas on the border between "
    "Nepal and China. Climbers from many countries try to reach its summit every year, usually in the spring, when "
    "the weather is calmer.",
)
"""Ordinary prose about well-known things, for the general-text perplexity before and after training."""


def retention_count(knowledge_examples: int, share: float) -> int:
    """How many retention examples make them ``share`` of the training set next to the knowledge examples."""
    if share <= 0 or knowledge_examples <= 0:
        return 0
    return max(1, round(knowledge_examples * share / (1.0 - share)))


def mix_retention(knowledge: Sequence[dict[str, Any]], retention: Sequence[dict[str, Any]], share: float,
                  seed: int) -> list[dict[str, Any]]:
    """The knowledge examples with retention examples added to make ``share`` of the whole, shuffled together.

    A small retention set is repeated (each example as evenly as possible) rather than the share quietly
    shrinking: the share is what the user asked for.
    """
    count = retention_count(len(knowledge), share) if retention else 0
    generator = random.Random(seed)
    chosen: list[dict[str, Any]] = []
    while len(chosen) < count:
        batch = list(retention)
        generator.shuffle(batch)
        chosen.extend(batch[:count - len(chosen)])
    mixed = list(knowledge) + chosen
    generator.shuffle(mixed)
    return mixed


def general_perplexity(model: Any, tokenizer: Any, texts: Sequence[str] = GENERAL_TEXT) -> float:
    """Perplexity of the model on the general-text passages (token-weighted over all of them)."""
    import math

    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    try:
        for text in texts:
            batch = tokenizer(text, return_tensors="pt").to(device)
            tokens = int(batch["input_ids"].shape[1]) - 1
            if tokens <= 0:
                continue
            with torch.inference_mode():
                loss = model(**batch, labels=batch["input_ids"]).loss
            total_loss += float(loss) * tokens
            total_tokens += tokens
    finally:
        if was_training:
            model.train()
    return math.exp(min(total_loss / max(1, total_tokens), 700.0))
