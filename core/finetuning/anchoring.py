"""Keeping the model's language where the documents say nothing: a KL anchor to the base model on general text.

Knowledge injection on a small model teaches more than the facts: answers trained to a loss near zero make the
model overconfident everywhere (on SmolLM2-135M after 100 steps at 1e-3 it gave an ordinary word probability 1.00
where the base model spread it over several), and general-text perplexity rose by 77%. Replaying general chat
examples with hard labels (``finetune.retention_share``) teaches their exact tokens too and did not stop it.

The anchor adds to every training step the KL divergence from the base model's next-token distributions to the
trained model's on a few general passages, so what the model says about everything else is pulled back to what it
said before, while the documents' answers are free to move. The base is the same network with the LoRA adapter
switched off (no second copy in memory); a step costs one more forward pass without gradients and one with.

The passages are ordinary prose on everyday subjects, written for this project and kept apart from the passages
the general-text perplexity is measured on (:data:`~heretic_tui.core.finetuning.retention.GENERAL_TEXT`), so the
check before and after training is not measured on text the anchor trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.finetuning.examples import token_windows
from heretic_tui.core.finetuning.sources import SourceData, read_sources
from heretic_tui.core.settings import FinetuneSettings, HubSettings

ANCHOR_TEXT = (
    "Rivers begin as small streams in hills and mountains, fed by rain and melting snow. As they flow downhill they "
    "join together, grow wider and carry sand and mud towards the sea. Many of the world's great cities were built "
    "beside rivers, which gave people water to drink, fish to eat and a way to move goods from place to place.",
    "Tea is made by pouring hot water over the dried leaves of the tea plant. It was first drunk in China thousands "
    "of years ago and later spread to India, Japan and Europe. Today people drink it hot or cold, with milk, lemon "
    "or sugar, and in some countries it is served at almost every meal.",
    "The moon is the only natural satellite of the Earth. It has no air and no liquid water, and its surface is "
    "covered with craters made by rocks that fell from space. The same side of the moon always faces the Earth, and "
    "its light is sunlight reflected from its grey, dusty ground.",
    "Football is played by two teams of eleven players who try to kick a ball into the other team's goal. Only the "
    "goalkeepers may touch the ball with their hands, and a match lasts ninety minutes. It is the most popular sport "
    "in the world, watched by millions of people every weekend.",
    "A library is a place where books and other materials are kept so that people can read or borrow them. Besides "
    "books, most libraries now offer newspapers, films, computers and quiet rooms for study. Librarians help visitors "
    "find what they need and organise the collection so that every item has its place.",
    "Honey bees live in large colonies with a single queen, thousands of workers and a few drones. The workers "
    "collect nectar and pollen from flowers, build wax combs and care for the young. While they feed, bees carry "
    "pollen from one flower to the next, which helps many fruits and vegetables to grow.",
    "The Roman Empire was one of the largest empires of the ancient world. At its height it ruled lands around the "
    "whole Mediterranean Sea, from Britain in the north to Egypt in the south. The Romans built roads, bridges and "
    "aqueducts, and their language, Latin, is the root of Italian, French, Spanish and Portuguese.",
    "Rain forms when water vapour in the air cools and condenses into tiny droplets that gather as clouds. When the "
    "droplets join together and become too heavy to float, they fall to the ground. Some places receive rain almost "
    "every day, while deserts may go for years without a single shower.",
    "A bicycle is a vehicle with two wheels, moved by pushing pedals that turn a chain. It needs no fuel, makes no "
    "noise and takes up little space, which is why many people use one to get to work or school. Riders steer with "
    "the handlebars and slow down with brakes that press against the wheels.",
    "Chess is a board game for two players, each of whom controls sixteen pieces: a king, a queen, two rooks, two "
    "bishops, two knights and eight pawns. The aim is to trap the other player's king so that it cannot escape. "
    "The game is played all over the world, in parks and clubs as well as in international tournaments.",
    "Volcanoes are openings in the Earth's crust through which hot melted rock, ash and gas escape. When a volcano "
    "erupts, the lava that flows out cools and hardens into new rock. Over many eruptions a volcano can grow into a "
    "tall mountain, and some islands are the tops of volcanoes that rise from the sea floor.",
    "A good night's sleep helps the body and the mind to recover. Most adults need between seven and nine hours, "
    "while children need more. Going to bed at the same time each night, keeping the bedroom dark and avoiding "
    "screens before sleep are simple habits that help many people rest better.",
    "The telephone lets people talk to each other over long distances. Early telephones carried the voice as an "
    "electric signal along copper wires, and calls were connected by operators at switchboards. Today most calls "
    "travel as digital data, and a mobile phone in a pocket can reach almost anyone in the world.",
    "Trees are tall plants with a woody trunk, branches and leaves. They take carbon dioxide from the air and give "
    "out oxygen, and their roots hold the soil in place. Some trees lose their leaves every autumn, while others, "
    "such as pines and firs, stay green all year round.",
    "Money is anything that people accept in exchange for goods and services. Long ago people traded shells, salt "
    "or metal, and later governments began to make coins and paper notes. Today much of the money people spend "
    "never takes a physical form at all, moving instead as numbers between bank accounts.",
    "The piano is a musical instrument played by pressing keys on a keyboard. Each key moves a small hammer that "
    "strikes a string inside the instrument, and the string vibrates to make a sound. A standard piano has eighty "
    "eight keys, and it can play both a melody and the chords that go with it.",
    "Deserts are dry regions that receive very little rain. Some are covered with sand dunes, but many are rocky "
    "plains or mountains. Plants and animals that live there have found ways to survive with little water, such as "
    "cactuses that store water in their stems and animals that stay underground during the heat of the day.",
    "Writing a clear letter starts with knowing what you want to say. Begin with a greeting, explain the purpose of "
    "the letter in the first few lines, and give the details in short paragraphs. End politely, thank the reader "
    "for their time and sign your name, so that the reader knows who wrote to them and why.",
    "The human eye works a little like a camera. Light enters through the pupil and is focused by the lens onto the "
    "back of the eye, where millions of cells turn it into signals for the brain. The brain then puts these signals "
    "together into the pictures we see, with their colours, shapes and distances.",
    "Trains carry passengers and goods along railway tracks. The first steam trains appeared in Britain about two "
    "hundred years ago and changed the way people travelled and traded. Modern high speed trains run on electricity "
    "and can travel at more than three hundred kilometres an hour between large cities.",
    "Gardening is a popular hobby in many countries. Gardeners prepare the soil, sow seeds, water the plants and pull "
    "out weeds, and after a few weeks they can enjoy flowers, herbs or vegetables. Many people find that working "
    "outdoors with plants is a calm and rewarding way to spend a free afternoon.",
    "Glass is made by heating sand, soda and lime until they melt together into a thick liquid. While it is hot the "
    "glass can be blown, pressed or rolled into shape, and it becomes hard and clear as it cools. It is used for "
    "windows, bottles, lenses and screens, and it can be melted down and made again many times.",
    "Penguins are birds that cannot fly but swim very well. Most of them live in the cold seas of the southern half "
    "of the world, and they use their wings as flippers to chase fish under the water. On land they walk with a "
    "waddle or slide on their bellies across the ice.",
    "Maps show the shape of the land, the position of towns and the roads and rivers between them. A map is drawn to "
    "a scale, so that a short distance on the paper stands for a long distance on the ground. Today many people use "
    "maps on their phones, which can also show where they are and how to reach where they want to go.",
)
"""Everyday prose for the anchor, apart from the perplexity passages (see the module docstring)."""

PASSAGES_PER_STEP = 2
"""Anchor passages per training step: enough to cover the vocabulary of ordinary prose over a run, few enough that
a step costs well under twice a step without the anchor."""


def anchor_passages(data: SourceData, tokenizer: Any, size: int) -> list[str]:
    """A user's anchor text as passages: each document cut into windows of ``size`` tokens (the training length,
    so nothing is lost to truncation; the same cutter as the training documents), each conversation's turns as
    one passage."""
    passages = [window for document in data.documents for window in token_windows(tokenizer, document.text, size, 0)]
    passages += ["\n".join(content for _, content in conversation.messages if content.strip())
                 for conversation in data.conversations]
    return [passage for passage in passages if passage.strip()]


def anchor_source(settings: FinetuneSettings, tokenizer: Any, size: int,
                  check_cancelled: Callable[[], None] | None = None,
                  hub: HubSettings | None = None) -> tuple[list[str], str]:
    """The anchor's passages and where they come from (for the log): ``finetune.anchor_data`` cut into windows of
    ``size`` tokens, or the built-in set."""
    if not settings.anchor_data:
        return list(ANCHOR_TEXT), f"{len(ANCHOR_TEXT)} built-in passages"
    from heretic_tui.core.finetuning.data import clean_sources

    passages = anchor_passages(clean_sources(read_sources(settings.anchor_data, check_cancelled, hub)), tokenizer,
                               size)
    if not passages:
        raise UserInputError(
            f"finetune.anchor_data ({', '.join(settings.anchor_data)}) holds no text once cleaned, so the anchor "
            "has nothing to keep the model close to the base model on. Point it at plain text, documents or "
            "conversations, or leave it empty for the built-in passages."
        )
    return passages, f"{len(passages)} passages from {', '.join(settings.anchor_data)}"


def anchor_batches(tokenizer: Any, texts: Sequence[str], per_step: int, max_length: int,
                   device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The passages tokenized (plain text, no chat template), ``per_step`` at a time, round and round forever."""
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise ValueError("The anchor has no general text to keep the model close to the base model on.")
    while True:
        for start in range(0, len(texts), per_step):
            chunk = list(texts[start:start + per_step])
            batch = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            yield {key: value.to(device) for key, value in batch.items() if key in ("input_ids", "attention_mask")}


def anchor_divergence(base_logits: torch.Tensor, logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the passages' real tokens of KL(base || trained) of the next-token distributions, in float32."""
    base = torch.log_softmax(base_logits.float(), dim=-1)
    trained = torch.log_softmax(logits.float(), dim=-1)
    per_token = (base.exp() * (base - trained)).sum(dim=-1)
    mask = attention_mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


class Anchor:
    """The KL term one training step adds, read from the same model with its adapter on and off."""

    def __init__(self, tokenizer: Any, weight: float, max_length: int, device: torch.device,
                 texts: Sequence[str] = ANCHOR_TEXT, per_step: int = PASSAGES_PER_STEP) -> None:
        self.weight = weight
        self._batches = anchor_batches(tokenizer, texts, per_step, max_length, device)
        self._seen: list[float] = []

    def divergence(self, model: Any) -> torch.Tensor:
        """KL(base || trained) on the next anchor batch, with gradients through the trained model only."""
        batch = next(self._batches)
        with torch.no_grad(), model.disable_adapter():
            base_logits = model(**batch).logits
        logits = model(**batch).logits
        divergence = anchor_divergence(base_logits, logits, batch["attention_mask"])
        self._seen.append(float(divergence.detach()))
        return divergence

    def logged(self) -> float | None:
        """The mean divergence since the last call (for the training log), or None when no step ran."""
        if not self._seen:
            return None
        mean = sum(self._seen) / len(self._seen)
        self._seen = []
        return mean


def anchored_trainer_class() -> type:
    """TRL's SFTTrainer with the anchor's term added to the training loss (imported lazily, as TRL is)."""
    from trl import SFTTrainer

    class AnchoredSFTTrainer(SFTTrainer):  # type: ignore[misc]
        """SFTTrainer plus ``anchor.weight * KL(base || trained)`` on general text at every training step."""

        anchor: Anchor | None = None

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
            if self.anchor is None or self.anchor.weight <= 0 or not model.training:
                return result
            loss, outputs = result if return_outputs else (result, None)
            term = self.anchor.weight * self.anchor.divergence(self.accelerator.unwrap_model(model))
            if self._loss_is_scaled_for_accumulation(num_items_in_batch):
                term = term / self.current_gradient_accumulation_steps
            loss = loss + term.to(loss.dtype)
            return (loss, outputs) if return_outputs else loss

        def _loss_is_scaled_for_accumulation(self, num_items_in_batch: Any) -> bool:
            """Whether the trainer leaves this step's loss undivided by the accumulation steps (the loss was
            normalized over the whole accumulated batch), in which case the anchor's share is divided here."""
            scaled = getattr(self, "loss_is_scaled_for_ga", None)
            if scaled is not None:
                return bool(scaled)
            return bool((getattr(self, "model_accepts_loss_kwargs", False) and num_items_in_batch is not None)
                        or getattr(self, "compute_loss_func", None) is not None)

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if self.anchor is not None and "loss" in logs:
                mean = self.anchor.logged()
                if mean is not None:
                    logs["anchor_kl"] = round(mean, 6)
            super().log(logs, *args, **kwargs)

    return AnchoredSFTTrainer
