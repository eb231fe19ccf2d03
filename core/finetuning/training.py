"""PEFT LoRA/DoRA/QLoRA training with TRL's SFT trainer, configured from the settings.

TRL does the tokenizing, loss masking, packing and the training loop; this module only decides the configuration
(which dataset format, which mask, which precision) and wires the journal callback in. Checkpoints go to
``RUN_DIR/checkpoints`` every ``checkpoint_steps`` steps together with a validation pass, because ranking
checkpoints by validation loss needs a loss for each of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from heretic_tui.core.finetuning.anchoring import ANCHOR_TEXT, Anchor, anchored_trainer_class
from heretic_tui.core.finetuning.callbacks import JournalCallback
from heretic_tui.core.finetuning.chat_masks import masked_chat_dataset, trl_can_mask
from heretic_tui.core.finetuning.data import PreparedData
from heretic_tui.core.finetuning.examples import MODE_CHAT
from heretic_tui.core.finetuning.packing import has_variable_length_attention, pack_into_rows
from heretic_tui.core.settings import FinetuneSettings

CHECKPOINT_FOLDER = "checkpoints"
TENSORBOARD_FOLDER = "tensorboard"
EVERY_STEP_LOGGING_UP_TO = 200
"""Runs of up to this many steps log every step (a curve of a 6-step run needs 6 points); longer ones log
``1 / EVERY_STEP_LOGGING_UP_TO`` of the run at a time, about 200 points."""
EVALUATIONS_PER_RUN = 10
"""Validation passes aimed for in a run whose checkpoints are further apart (for the eval-loss curve and early
stopping); the evaluation interval divides the checkpoint interval, as ranking checkpoints needs."""


@dataclass
class DatasetChoice:
    """The TRL datasets for a run and whether TRL masks the assistant turns itself."""

    train: Any
    validation: Any | None
    trl_assistant_mask: bool
    description: str


def choose_datasets(prepared: PreparedData, tokenizer: Any) -> DatasetChoice:
    """Datasets in the format TRL handles for the mode; chat data gets its assistant mask one way or the other."""
    from datasets import Dataset

    if prepared.mode == MODE_CHAT and not trl_can_mask(tokenizer):
        train = masked_chat_dataset(tokenizer, prepared.train)
        validation = masked_chat_dataset(tokenizer, prepared.validation) if prepared.validation else None
        return DatasetChoice(train, validation, False,
                             "chat, loss on assistant turns (mask computed from the chat template)")
    train = Dataset.from_list(prepared.train)
    validation = Dataset.from_list(prepared.validation) if prepared.validation else None
    descriptions = {
        "text": "text, loss on every token",
        "instruct": "instruct, loss on the answer (TRL completion-only loss)",
        "chat": "chat, loss on assistant turns (TRL assistant-only loss)",
    }
    return DatasetChoice(train, validation, prepared.mode == MODE_CHAT, descriptions[prepared.mode])


def lora_config(settings: FinetuneSettings, target_modules: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=target_modules,
        use_dora=settings.dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def precision(model: Any) -> dict[str, bool]:
    """Mixed precision only on CUDA and matching the weights; on CPU the weights' own dtype is used as is."""
    dtype = next(model.parameters()).dtype
    quantized = is_quantized_base(model)
    if not torch.cuda.is_available():
        return {"bf16": False, "fp16": False}
    if quantized or dtype == torch.bfloat16:
        return {"bf16": torch.cuda.is_bf16_supported(), "fp16": False}
    if dtype == torch.float16:
        return {"bf16": False, "fp16": True}
    return {"bf16": False, "fp16": False}


def planned_steps(settings: FinetuneSettings, sequences: int) -> int:
    """The optimizer steps the run will take, counted before the trainer exists (the plan counts them again exactly)."""
    from heretic_tui.core.finetuning.plan import steps_for

    return steps_for(sequences, settings.per_device_batch_size, settings.gradient_accumulation, settings.epochs,
                     settings.max_steps)[0]


def logging_interval(settings: FinetuneSettings, steps: int) -> float:
    """finetune.logging_steps, or for 0 every step of a short run and a fixed share of a long one."""
    if settings.logging_steps > 0:
        return settings.logging_steps
    return 1 if steps <= EVERY_STEP_LOGGING_UP_TO else 1.0 / EVERY_STEP_LOGGING_UP_TO


def evaluation_interval(checkpoint_steps: int, steps: int) -> int:
    """The largest divisor of the checkpoint interval that still gives about ten validation passes in the run."""
    target = max(1, steps // EVALUATIONS_PER_RUN)
    return max(divisor for divisor in range(1, checkpoint_steps + 1)
               if checkpoint_steps % divisor == 0 and divisor <= target)


def report_destinations(settings: FinetuneSettings, output_dir: Path) -> str:
    """Where the Trainer also logs: nowhere, or TensorBoard files next to the checkpoints."""
    if settings.report_to == "tensorboard":
        import os

        os.environ["TENSORBOARD_LOGGING_DIR"] = str(output_dir.parent / TENSORBOARD_FOLDER)
    return settings.report_to


def sft_config(settings: FinetuneSettings, output_dir: Path, has_validation: bool, assistant_only_loss: bool,
               model: Any, length: int, steps: int = 0) -> Any:
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps if settings.max_steps > 0 else -1,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.learning_rate_scheduler,
        warmup_steps=settings.warmup_ratio,
        logging_steps=logging_interval(settings, steps),
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=evaluation_interval(settings.checkpoint_steps, steps),
        save_strategy="steps",
        save_steps=settings.checkpoint_steps,
        load_best_model_at_end=has_validation,
        metric_for_best_model="eval_loss" if has_validation else None,
        greater_is_better=False if has_validation else None,
        seed=settings.finetune_seed,
        data_seed=settings.finetune_seed,
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        max_length=length,
        packing=settings.packing and has_variable_length_attention(model),
        eval_packing=False,
        assistant_only_loss=assistant_only_loss,
        report_to=report_destinations(settings, output_dir),
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        use_cpu=not cuda,
        dataloader_pin_memory=cuda,
        **precision(model),
    )


def is_quantized_base(model: Any) -> bool:
    """Whether the base was loaded through bitsandbytes, in 4-bit (QLoRA) or 8-bit (LLM.int8)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def prepare_quantized(model: Any, settings: FinetuneSettings) -> Any:
    """QLoRA: a 4-bit or 8-bit base needs PEFT's k-bit preparation (norms in fp32, input gradients on) before LoRA."""
    if not is_quantized_base(model):
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.gradient_checkpointing)


def build_trainer(
    model: Any,
    tokenizer: Any,
    prepared: PreparedData,
    settings: FinetuneSettings,
    target_modules: list[str],
    length: int,
    output_dir: Path,
    callback: JournalCallback | None,
    anchor: tuple[Sequence[str], str] = (ANCHOR_TEXT, f"{len(ANCHOR_TEXT)} built-in passages"),
) -> tuple[Any, DatasetChoice]:
    """The SFT trainer for this run, with LoRA applied to the model (the model object is modified in place);
    ``anchor`` is the anchor's passages and their origin (:func:`~heretic_tui.core.finetuning.anchoring.
    anchor_source`), used when ``settings.anchor_weight`` is on."""
    from trl import SFTTrainer

    from transformers import EarlyStoppingCallback

    datasets = choose_datasets(prepared, tokenizer)
    configuration = sft_config(settings, output_dir, datasets.validation is not None,
                               datasets.trl_assistant_mask, model, length, planned_steps(settings, len(prepared.train)))
    callbacks: list[Any] = [callback] if callback is not None else []
    if settings.early_stopping_patience > 0 and datasets.validation is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience))
    trainer_class = anchored_trainer_class() if settings.anchor_weight > 0 else SFTTrainer
    trainer = trainer_class(
        model=prepare_quantized(model, settings),
        args=configuration,
        train_dataset=datasets.train,
        eval_dataset=datasets.validation,
        processing_class=tokenizer,
        peft_config=lora_config(settings, target_modules),
        callbacks=callbacks or None,
    )
    if settings.anchor_weight > 0:
        passages, origin = anchor
        trainer.anchor = Anchor(tokenizer, settings.anchor_weight, length, trainer.model.device, passages)
        datasets.description += (f"; anchored to the base model on general text (weight "
                                 f"{settings.anchor_weight:g}, {origin})")
    if settings.packing:
        if has_variable_length_attention(trainer.model):
            datasets.description += "; packed padding-free (FlashAttention)"
        else:
            pack_into_rows(trainer, length)
            datasets.description += "; packed into rows with per-example attention"
    return trainer, datasets


def finished_checkpoint_state(checkpoint: Path, planned_steps: int) -> Any | None:
    """The saved trainer state when ``checkpoint`` ends the planned training, else None (there is more to train).

    The Trainer, resumed from a checkpoint that already holds every step, still runs one more step when the
    checkpoint falls inside an epoch (it checks for the end only after a step), so a finished run would train
    past its plan on resume. Both the plan and the checkpoint's own ``max_steps`` must agree it is done: a user
    who resumes with more steps gets them.
    """
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    return state if state.global_step >= max(planned_steps, state.max_steps) else None


def restore_finished_training(trainer: Any, checkpoint: Path, state: Any) -> None:
    """Put the trainer where ``train()`` would have left it: its state, and the adapter it ends with.

    Like the Trainer's own end of training, the adapter is the best checkpoint's when the run ranks checkpoints by
    validation loss (and it still exists), else the final checkpoint's; it is loaded with PEFT's ``load_adapter``,
    which is what the Trainer itself uses for a PEFT model.
    """
    trainer.state = state
    chosen = checkpoint
    best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
    if trainer.args.load_best_model_at_end and best is not None and best.is_dir():
        chosen = best
    model = trainer.model
    model.load_adapter(str(chosen), model.active_adapters[0], is_trainable=True)
