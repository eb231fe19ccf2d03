"""The bridge between the transformers Trainer and the run's event journal.

Every log of the Trainer becomes a :class:`TrainingStep` event (loss, learning rate, grad norm, tokens/s, eval loss,
perplexity, ETA), which is what the dashboard and the headless printer draw. A cancel request is noticed after each
optimizer step: the callback asks the Trainer to save a checkpoint and stop, and the job raises ``JobCancelled``
once ``train()`` has returned, so a cancelled run always leaves a checkpoint to resume from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from heretic_tui.core.errors import JobCancelled
from heretic_tui.core.runs.events import Event, Metrics, TrainingStep
from heretic_tui.core.finetuning.checkpoints import rotate_checkpoints

TIME_ESTIMATE_AFTER_STEPS = 3
"""The plan gets its time estimate once this many steps have run after the first (which includes warm-up costs)."""


class JournalCallback(TrainerCallback):
    """Emits training events, rotates checkpoints to the best K, and turns a cancel request into save-and-stop."""

    def __init__(
        self,
        emit: Callable[[Event], None],
        check_cancelled: Callable[[], None],
        checkpoint_folder: Path,
        keep_checkpoints: int,
        plan: dict[str, Any] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.emit = emit
        self.check_cancelled = check_cancelled
        self.checkpoint_folder = checkpoint_folder
        self.keep_checkpoints = keep_checkpoints
        self.plan = plan
        self.log = log
        self.cancelled = False
        self._session_start = time.perf_counter()
        self._session_first_step = 0
        self._last_time = self._session_start
        self._last_tokens = 0
        self._estimated = False
        self._first_step_end: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._session_start = self._last_time = time.perf_counter()
        self._session_first_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        try:
            self.check_cancelled()
        except JobCancelled:
            if not self.cancelled:
                self.log(f"cancel requested: saving a checkpoint at step {state.global_step} and stopping")
            self.cancelled = True
            control.should_save = True
            control.should_training_stop = True
        if self._first_step_end is None:
            self._first_step_end = time.perf_counter()
        elif not self._estimated and self.plan is not None \
                and state.global_step - self._session_first_step > TIME_ESTIMATE_AFTER_STEPS:
            self._estimated = True
            measured = state.global_step - self._session_first_step - 1
            seconds_per_step = (time.perf_counter() - self._first_step_end) / measured
            remaining = max(0, state.max_steps - state.global_step) * seconds_per_step
            self.plan.update(seconds_per_step=round(seconds_per_step, 3),
                             estimated_seconds=round(state.max_steps * seconds_per_step, 1),
                             remaining_seconds=round(remaining, 1))
            self.emit(Metrics(name="plan", values=dict(self.plan)))

    def _seconds_per_step(self, state: TrainerState) -> float:
        done = state.global_step - self._session_first_step
        return (time.perf_counter() - self._session_start) / done if done > 0 else 0.0

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" not in logs and "eval_loss" not in logs:
            return
        now = time.perf_counter()
        tokens_per_second = None
        if "loss" in logs and now > self._last_time:
            seen = state.num_input_tokens_seen - self._last_tokens
            tokens_per_second = seen / (now - self._last_time) if seen > 0 else None
            self._last_time, self._last_tokens = now, state.num_input_tokens_seen
        eval_loss = logs.get("eval_loss")
        seconds_per_step = self._seconds_per_step(state)
        self.emit(TrainingStep(
            step=state.global_step,
            total_steps=state.max_steps or int((self.plan or {}).get("steps", 0)),
            loss=logs.get("loss"),
            learning_rate=logs.get("learning_rate"),
            grad_norm=logs.get("grad_norm"),
            tokens_per_second=tokens_per_second,
            eval_loss=eval_loss,
            perplexity=perplexity(eval_loss),
            epoch=state.epoch,
            eta_seconds=max(0, state.max_steps - state.global_step) * seconds_per_step if seconds_per_step else None,
            anchor_divergence=logs.get("anchor_kl"),
        ))

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        removed = rotate_checkpoints(self.checkpoint_folder, state.log_history, self.keep_checkpoints)
        if removed:
            self.log("removed checkpoints " + ", ".join(path.name for path in removed)
                     + f" (keeping the best {self.keep_checkpoints} by validation loss and the newest)")


def perplexity(loss: float | None) -> float | None:
    """exp(loss), capped where it would overflow (a loss above ~700 only says the model is far off)."""
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 700.0))
