"""Scoring K trials in shared forward passes: first-token KL and refusals, with per-row early stopping.

Each trial sees exactly the prompts and chunks it would see alone. The K copies are laid out prompt by prompt (the
rows of prompt p are p*K ... p*K + K - 1) and the batch is K times the evaluator's, so a chunk of the batched pass
holds the same prompts, with the same padding, as the corresponding chunk of a single trial's pass. Generation
drops every row as soon as its verdict is known, exactly as for one trial; the hooks of
:class:`~heretic_tui.core.abliteration.activation_ablation.ActivationAblation` follow the rows that remain.

How many trials share a pass at most (``abliteration.trial_batch``; 0 is automatic) is chosen by
:func:`choose_trial_batch` from what one more copy of the evaluation batch costs in memory; how many each batch
actually asks is :func:`~heretic_tui.core.abliteration.search_plan.trials_to_ask`'s, so batching never costs a
short study its search quality.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil
import torch

from heretic_tui.core.abliteration.ablation import COMPONENTS, KernelParameters, TrialParameters
from heretic_tui.core.abliteration.activation_ablation import ActivationAblation, TrialBatch
from heretic_tui.core.abliteration.evaluation import Evaluator, kl_divergence
from heretic_tui.core.abliteration.methods import NORM_PRESERVING, PROJECTION, SEARCH
from heretic_tui.core.models.generation import first_token_log_probabilities, generate_responses
from heretic_tui.core.settings import AbliterationSettings

MAX_AUTOMATIC_TRIAL_BATCH = 8
"""The most trials the automatic choice runs together: beyond it a pass is long enough to be compute-bound, and a
study would need hundreds of trials before its guided batches could use more (see search_plan.trials_to_ask)."""

MEMORY_HEADROOM = 0.8
"""Share of the free memory the automatic choice lets the extra copies of the batch take."""


class BatchedEvaluator:
    """An :class:`Evaluator`'s measurements for K trials at once, through activation hooks."""

    def __init__(self, evaluator: Evaluator, ablation: ActivationAblation) -> None:
        self.evaluator = evaluator
        self.ablation = ablation

    @staticmethod
    def _rows(prompts: int, trials: int) -> list[int]:
        return [trial for _ in range(prompts) for trial in range(trials)]

    def kl(self, batch: TrialBatch) -> list[float]:
        """Each trial's mean first-token KL divergence from the unmodified model."""
        evaluator = self.evaluator
        trials = len(batch)
        texts = [text for text in evaluator.kl_texts for _ in range(trials)]
        with self.ablation.applied(batch, self._rows(len(evaluator.kl_texts), trials)):
            log_probabilities = first_token_log_probabilities(evaluator.loaded, texts, evaluator.batch_size * trials)
        return [kl_divergence(evaluator.reference, log_probabilities[trial::trials]) for trial in range(trials)]

    def generate(self, batch: TrialBatch, check_cancelled: Callable[[], None] | None = None) -> list[list[str]]:
        """Each trial's responses to the harmful prompts (in prompt order), each stopped early at a sure refusal."""
        evaluator = self.evaluator
        trials = len(batch)
        texts = [text for text in evaluator.harmful_texts for _ in range(trials)]
        with self.ablation.applied(batch, self._rows(len(evaluator.harmful_texts), trials)):
            responses = generate_responses(evaluator.loaded, texts, evaluator.batch_size * trials,
                                           evaluator.max_tokens, evaluator.scorer.early_verdict, check_cancelled,
                                           evaluator.thinking)
        return [[response.answer for response in responses[trial::trials]] for trial in range(trials)]


def sample_trial(layers: int, settings: AbliterationSettings) -> TrialParameters:
    """A trial that edits every weight of every layer (with MPOA where the study may use it), the costliest a
    copy of the batch can carry, for measuring that cost."""
    kernel = KernelParameters(max_weight=1.0, max_weight_position=0.0, min_weight=1.0, min_weight_distance=layers)
    method = NORM_PRESERVING if settings.ablation_method in (NORM_PRESERVING, SEARCH) else PROJECTION
    return TrialParameters("global", 0.0, {component: kernel for component in COMPONENTS}, ablation_method=method)


def free_memory_bytes(device: torch.device) -> int:
    """Memory still free where the batch lives: the GPU's, or the host's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def copy_cost_bytes(batched: BatchedEvaluator, sample: TrialParameters) -> int:
    """What one more copy of the evaluation batch costs in memory.

    On CUDA it is measured: the peak of a short generation with one copy and with two. The host's allocator gives
    no peak to read, so on a CPU it is estimated from the KV cache one copy fills at the longest response (keys and
    values of every layer, float32, with the longest prompt's length in characters standing in for its tokens, an
    upper bound), doubled for the activations beside it."""
    evaluator = batched.evaluator
    device = evaluator.loaded.device
    if device.type != "cuda":
        config = evaluator.loaded.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        tokens = evaluator.max_tokens + max((len(item) for item in evaluator.harmful_texts), default=0)
        return 2 * evaluator.batch_size * tokens * text.num_hidden_layers * 2 * text.hidden_size * 4
    texts = evaluator.harmful_texts[:evaluator.batch_size]
    peaks = []
    for copies in (1, 2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with batched.ablation.applied(batched.ablation.prepare([sample] * copies),
                                      [copy for _ in texts for copy in range(copies)]):
            generate_responses(evaluator.loaded, [text for text in texts for _ in range(copies)],
                               len(texts) * copies, 4, lambda answer, finished: None if not finished else False)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
    return max(peaks[1] - peaks[0], 1)


def choose_trial_batch(setting: int, batched: BatchedEvaluator, sample: TrialParameters,
                       log: Callable[[str], None] = print) -> int:
    """K: the setting when it names one, else as many copies of the evaluation batch (at most
    MAX_AUTOMATIC_TRIAL_BATCH) as MEMORY_HEADROOM of the free memory holds, at :func:`copy_cost_bytes` each."""
    if setting > 0:
        return setting
    device = batched.evaluator.loaded.device
    try:
        cost = copy_cost_bytes(batched, sample)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        log("trial batch: a second copy of the evaluation batch does not fit in memory, so trials run one by one")
        return 1
    free = free_memory_bytes(device)
    chosen = max(1, min(MAX_AUTOMATIC_TRIAL_BATCH, 1 + int(MEMORY_HEADROOM * free // cost)))
    log(f"trial batch: {chosen} trials per forward pass (one more copy of the evaluation batch costs about "
        f"{cost / 2**20:.1f} MiB; {free / 2**20:.0f} MiB free)")
    return chosen
