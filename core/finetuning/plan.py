"""The training plan shown before the first step: how much data, how many steps, and whether it will fit.

The plan also warns about over-training (hundreds of passes over a dozen examples) and under-training (less than a
single pass), and says when the schedule cannot teach the adapter anything, before an hour of training proves it: a
learning rate that is 0 at every step (a warmup longer than a tiny run ramps up from 0 and never gets going), a
warmup as long as the run, fewer training sequences than one optimizer step's batch. Each problem is one sentence
with the fix, shown with the plan and repeated in the report; the run still goes ahead, because the user may mean
it (a smoke test of the pipeline), but it is never reported as a plain success.

The memory figure is an estimate from first principles (weights + adapter + gradients + AdamW state + activations +
logits), good to within tens of percent; it exists so a user sees "needs 30 GB" before an out-of-memory error an
hour in, not to replace measuring. Activations follow the usual transformer accounting (about 34 bytes per token
per hidden unit per layer in 16-bit, halved again for attention that never materialises the score matrix); with
gradient checkpointing only one hidden state per layer is kept plus one layer's worth during its recomputation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from heretic_tui.core.settings import FinetuneSettings

GIGABYTE = 1024**3
ACTIVATION_BYTES_PER_UNIT_16_BIT = 34
ADAM_STATE_BYTES = 8
GRADIENT_BYTES = 4
ADAPTER_WEIGHT_BYTES = 4
LOGIT_BYTES = 4
OVER_TRAINING_EPOCHS = 100
"""More passes than this over the same examples memorises them (and costs general ability) rather than teaching."""
UNDER_TRAINING_EPOCHS = 1.0
"""Fewer passes than this leave some examples never seen: their facts cannot have been learned."""


@dataclass
class MemoryEstimate:
    weights: float
    adapter: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.adapter + self.optimizer + self.activations


@dataclass
class TrainingPlan:
    train_examples: int
    validation_examples: int
    sequences: int
    tokens: int
    steps: int
    steps_per_epoch: int
    epochs: float
    effective_batch: int
    sequence_length: int
    trainable_parameters: int
    total_parameters: int
    memory: MemoryEstimate
    learning_rate: float = 0.0
    warmup_steps: int = 0
    problems: list[str] = field(default_factory=list)
    """Why this schedule cannot (or can hardly) teach the adapter anything, each with its fix; empty when fine."""

    def metrics(self) -> dict[str, Any]:
        """The plan as the flat figures of a Metrics event (memory in GB, rounded for reading)."""
        values = {key: value for key, value in asdict(self).items() if key not in ("memory", "problems")}
        values["epochs"] = round(self.epochs, 2)
        values["memory_weights_gb"] = round(self.memory.weights / GIGABYTE, 3)
        values["memory_adapter_gb"] = round(self.memory.adapter / GIGABYTE, 3)
        values["memory_optimizer_gb"] = round(self.memory.optimizer / GIGABYTE, 3)
        values["memory_activations_gb"] = round(self.memory.activations / GIGABYTE, 3)
        values["memory_total_gb"] = round(self.memory.total / GIGABYTE, 3)
        values["problems"] = list(self.problems)
        return values


def steps_for(sequences: int, batch_size: int, accumulation: int, epochs: float, max_steps: int) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch) the way the transformers Trainer counts them."""
    batches = max(1, math.ceil(sequences / batch_size))
    per_epoch = max(1, batches // accumulation + int(batches % accumulation > 0))
    if max_steps > 0:
        return max_steps, per_epoch
    return max(1, math.ceil(epochs * per_epoch)), per_epoch


def estimate_memory(
    model: Any,
    batch_size: int,
    sequence_length: int,
    gradient_checkpointing: bool,
) -> MemoryEstimate:
    """Bytes needed to train: frozen weights, trainable adapter with its gradients and AdamW state, activations."""
    weights = 0.0
    trainable = 0
    for parameter in model.parameters():
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            weights += parameter.numel() * parameter.element_size()
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    vocabulary = int(getattr(config, "vocab_size", 0) or 0)
    activation_bytes = next(
        (p.element_size() for p in model.parameters() if p.is_floating_point() and not p.requires_grad), 2
    )
    tokens = batch_size * sequence_length
    per_layer = ACTIVATION_BYTES_PER_UNIT_16_BIT / 2 * activation_bytes * tokens * hidden
    if gradient_checkpointing:
        activations = layers * tokens * hidden * activation_bytes + per_layer
    else:
        activations = layers * per_layer
    activations += tokens * vocabulary * LOGIT_BYTES * 2
    return MemoryEstimate(
        weights=weights,
        adapter=trainable * (ADAPTER_WEIGHT_BYTES + GRADIENT_BYTES),
        optimizer=trainable * ADAM_STATE_BYTES,
        activations=activations,
    )


def make_plan(trainer: Any, train_examples: int, validation_examples: int, epochs: float, max_steps: int,
              sequence_length_limit: int, gradient_checkpointing: bool) -> TrainingPlan:
    """The plan of a built SFT trainer: its tokenized (and maybe packed) data, its schedule, its model."""
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    arguments = trainer.args
    steps, per_epoch = steps_for(len(lengths), arguments.per_device_train_batch_size,
                                 arguments.gradient_accumulation_steps, epochs, max_steps)
    sequence_length = min(sequence_length_limit, max(lengths, default=1))
    model = trainer.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    plan = TrainingPlan(
        train_examples=train_examples,
        validation_examples=validation_examples,
        sequences=len(lengths),
        tokens=sum(lengths),
        steps=steps,
        steps_per_epoch=per_epoch,
        epochs=(steps / per_epoch) if max_steps > 0 else epochs,
        effective_batch=arguments.per_device_train_batch_size * arguments.gradient_accumulation_steps
        * max(1, arguments.world_size),
        sequence_length=sequence_length,
        trainable_parameters=trainable,
        total_parameters=total,
        memory=estimate_memory(model, arguments.per_device_train_batch_size, sequence_length,
                               gradient_checkpointing),
        learning_rate=float(arguments.learning_rate),
        warmup_steps=arguments.get_warmup_steps(steps),
    )
    plan.problems = schedule_problems(plan, learning_rate_ever_positive(arguments, steps))
    return plan


def learning_rate_ever_positive(arguments: Any, steps: int) -> bool:
    """Whether any of the ``steps`` optimizer steps gets a learning rate above 0, by the Trainer's own schedule.

    The schedule is the one transformers builds for the run (``get_scheduler`` with the run's warmup), stepped on a
    throwaway optimizer until a step's rate is above 0: standard schedules get there within the first few steps, so
    only a run that never does is walked to its end, and such a run is short.
    """
    import torch
    from transformers import get_scheduler

    if arguments.learning_rate <= 0:
        return False
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=arguments.learning_rate)
    scheduler = get_scheduler(arguments.lr_scheduler_type, optimizer,
                              num_warmup_steps=arguments.get_warmup_steps(steps), num_training_steps=steps,
                              scheduler_specific_kwargs=arguments.lr_scheduler_kwargs)
    for _ in range(steps):
        if optimizer.param_groups[0]["lr"] > 0:
            return True
        optimizer.step()
        scheduler.step()
    return False


def schedule_problems(plan: TrainingPlan, learning_rate_positive: bool) -> list[str]:
    """Each reason the planned schedule cannot teach the adapter anything, as one sentence with the fix."""
    problems = []
    every_step = "its single optimizer step" if plan.steps == 1 else f"every one of its {plan.steps} optimizer steps"
    if plan.learning_rate <= 0:
        problems.append(
            "The learning rate is 0 (finetune.learning_rate), so no step changes the adapter. Set it above 0, e.g. "
            f"to the default {FinetuneSettings().learning_rate:g}."
        )
    elif not learning_rate_positive:
        problems.append(
            f"The learning rate is 0 at {every_step}: the {plan.warmup_steps}-step warmup starts from 0 and the run "
            "ends before the rate rises, so no step changes the adapter. Train for more steps (finetune.epochs, "
            "finetune.max_steps, or more data), or set finetune.warmup_ratio to 0."
        )
    elif plan.warmup_steps >= plan.steps:
        problems.append(
            f"The warmup ({plan.warmup_steps} steps) is as long as the whole run ({plan.steps} steps), so the "
            "learning rate never reaches finetune.learning_rate. Lower finetune.warmup_ratio, or train for more "
            "steps."
        )
    if plan.epochs > OVER_TRAINING_EPOCHS:
        problems.append(
            f"The run makes {plan.epochs:g} passes over {plan.train_examples} training examples: the adapter will "
            "learn them word for word and lose general ability (over-training). Train for fewer steps "
            f"(finetune.max_steps or finetune.epochs; {UNDER_TRAINING_EPOCHS:g} to {OVER_TRAINING_EPOCHS // 2} "
            "epochs suit most data), add data, or set finetune.early_stopping_patience to stop when the validation "
            "loss stops improving."
        )
    elif 0 < plan.epochs < UNDER_TRAINING_EPOCHS and plan.learning_rate > 0:
        problems.append(
            f"The run ends after {plan.epochs:.2g} of a pass over its {plan.train_examples} training examples, so "
            "some are never seen and their facts cannot be learned (under-training; facts usually need several "
            "passes to stick). Raise finetune.max_steps or finetune.epochs."
        )
    if plan.sequences < plan.effective_batch:
        sequences = "is only 1 training sequence" if plan.sequences == 1 else \
            f"are only {plan.sequences} training sequences"
        problems.append(
            f"There {sequences} for an effective batch of {plan.effective_batch} (finetune.per_device_batch_size "
            "x finetune.gradient_accumulation), so each epoch is a single optimizer step on a partial batch. Add "
            "data, or lower finetune.gradient_accumulation (or finetune.per_device_batch_size) until the batch "
            "holds at most the data."
        )
    return problems
