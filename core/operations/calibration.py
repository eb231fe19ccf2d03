"""``heretic-tui plan --calibrate``: a trial's time measured on this machine before a study starts.

The plan's table of memory bandwidth is good to a factor of two at best; a model that is already here can be timed
instead. This loads it the way a run does (the same settings, the same batch size a run would pick), times one
batch of the first-token pass the KL divergence needs and one batch of generation, and scales them to a trial: as
many batches of each as the evaluation prompts fill. The generation batch runs to ``refusal_max_tokens`` without the
early stop at a sure refusal, which is what a trial costs once an ablation stops the refusals (the unmodified
model's refusals would stop early and make the figure look better than the study will be). The refusal scorer's own
time is not included: the markers cost nothing, an LLM judge is timed by the study itself
(:mod:`.trial_time`).

A hub id is refused: timing it needs its weights, and the plan before a download must not download them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.operations.trial_time import approximate_duration
from heretic_tui.core.settings import Settings


@dataclass(frozen=True)
class Calibration:
    """What one batch of each pass took, and the trial they add up to."""

    batch_size: int
    kl_batch_seconds: float
    generation_batch_seconds: float
    kl_batches: int
    generation_batches: int
    response_tokens: int
    device: str

    @property
    def seconds_per_trial(self) -> float:
        return self.kl_batches * self.kl_batch_seconds + self.generation_batches * self.generation_batch_seconds

    def describe(self) -> str:
        """The plan's timing source: what was measured."""
        return (f"measured on {self.device}: {self.kl_batches} x {self.kl_batch_seconds:.2f}s first-token batches and "
                f"{self.generation_batches} x {self.generation_batch_seconds:.2f}s generation batches of "
                f"{self.batch_size} prompts, {self.response_tokens} tokens each")


def check_calibratable(model: str) -> None:
    """Only a model on this machine (a folder, an export, or the demo) is timed; see the module doc."""
    from heretic_tui.core.models.references import KIND_HUB, parse_model_reference

    if parse_model_reference(model, allow_trial=False).kind == KIND_HUB:
        raise UserInputError(
            f"--calibrate times the model, which needs its weights, and {model} is a Hub id: the plan does not "
            "download it. Run the plan without --calibrate for the estimate from its metadata, or download the "
            f"model first (`huggingface-cli download {model} --local-dir FOLDER`) and plan --model FOLDER "
            "--calibrate."
        )


def calibrate(settings: Settings, log: Callable[[str], None] = print) -> Calibration:
    """Load ``settings.model.model`` and time one batch of each pass a trial makes (see the module doc)."""
    from heretic_tui.core.abliteration.job import resolved_sources
    from heretic_tui.core.abliteration.prompts import load_prompt_records
    from heretic_tui.core.models.batch_size import choose_batch_size
    from heretic_tui.core.models.chat_template import format_chat
    from heretic_tui.core.models.generation import first_token_log_probabilities, generate_responses
    from heretic_tui.core.models.loading import load_model
    from heretic_tui.core.models.thinking import plan_thinking

    check_calibratable(settings.model.model)
    sources = resolved_sources(settings)
    limit = settings.prompts.max_eval_prompts
    harmless = [record.text for record in load_prompt_records(sources["good_eval_prompts"], limit,
                                                              f"prompts.good_eval_prompts ({sources['good_eval_prompts']})")]
    harmful = [record.text for record in load_prompt_records(sources["bad_eval_prompts"], limit,
                                                             f"prompts.bad_eval_prompts ({sources['bad_eval_prompts']})")]
    loaded = load_model(settings.model, None, log)
    log(f"loaded {loaded.location} as {loaded.dtype} on {loaded.device} in {loaded.seconds:.1f}s")
    thinking = plan_thinking(loaded.tokenizer, settings.abliteration, settings.model.model)
    system = settings.prompts.system_prompt
    harmless_texts = format_chat(loaded.tokenizer, system, harmless, thinking.style)
    harmful_texts = format_chat(loaded.tokenizer, system, harmful, thinking.style)
    batch = settings.model.batch_size or choose_batch_size(loaded, harmful_texts, settings.model, log)
    first_harmless, first_harmful = harmless_texts[:batch], harmful_texts[:batch]
    first_token_log_probabilities(loaded, first_harmless[:1], 1)

    def timed(work: Callable[[], object]) -> float:
        """Seconds of ``work`` once the GPU has finished it too (CUDA returns before the kernels end)."""
        started = time.perf_counter()
        work()
        if loaded.device.type == "cuda":
            import torch

            torch.cuda.synchronize(loaded.device)
        return time.perf_counter() - started

    kl_seconds = timed(lambda: first_token_log_probabilities(loaded, first_harmless, batch))
    tokens = settings.abliteration.refusal_max_tokens
    generation_seconds = timed(lambda: generate_responses(loaded, first_harmful, batch, tokens,
                                                          lambda answer, finished: None, thinking=thinking))
    calibration = Calibration(batch_size=batch, kl_batch_seconds=kl_seconds,
                              generation_batch_seconds=generation_seconds,
                              kl_batches=math.ceil(len(harmless_texts) / batch),
                              generation_batches=math.ceil(len(harmful_texts) / batch), response_tokens=tokens,
                              device=str(loaded.device))
    log(f"calibration: {approximate_duration(calibration.seconds_per_trial)} per trial")
    return calibration
