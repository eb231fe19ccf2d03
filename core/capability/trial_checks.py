"""The capability checks of an abliteration run: the original model and the chosen trial, side by side."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from heretic_tui.core.abliteration.ablation import Abliterator, TrialParameters
from heretic_tui.core.abliteration.activation_ablation import ActivationAblation
from heretic_tui.core.capability.checks import compare_results, run_checks
from heretic_tui.core.capability.multiple_choice import ITEMS
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.runs.worker import JobContext


@contextmanager
def trial_applied(abliterator: Abliterator | None, hooks: ActivationAblation | None,
                  parameters: dict[str, Any]) -> Iterator[None]:
    """The model with the trial's edit for the forwards inside: in its weights (undone after), or, where the weights
    must not be written (a quantized model), through the hooks the search used."""
    trial = TrialParameters.from_flat(parameters)
    if abliterator is not None:
        abliterator.apply(trial)
        try:
            yield
        finally:
            abliterator.reset()
    elif hooks is not None:
        with hooks.applied(hooks.prepare([trial])):
            yield
    else:
        raise ValueError("a trial needs either the weight path or the hooks to be applied")


def check_chosen_trial(context: JobContext, loaded: LoadedModel, abliterator: Abliterator | None,
                       hooks: ActivationAblation | None, trial: int, parameters: dict[str, Any], batch_size: int,
                       questions: int) -> dict[str, Any]:
    """Both checks on the unmodified model, then on it with the trial's edit (undone afterwards)."""
    questions = min(questions, len(ITEMS))
    with context.phase("capability", 2 * questions,
                       f"capability checks: the original model and trial {trial}") as progress:
        original = run_checks(loaded, batch_size, questions, progress)
        with trial_applied(abliterator, hooks, parameters):
            edited = run_checks(loaded, batch_size, questions, lambda done: progress(questions + done))
    record = compare_results(original, edited)
    record["trial_number"] = trial
    change = record["accuracy_change"]
    context.log(f"capability: multiple choice {original.accuracy:.1%} -> {edited.accuracy:.1%} (change "
                f"{change['value']:+.1%}, 95% CI {change['low']:+.1%} to {change['high']:+.1%}); perplexity "
                f"{original.perplexity:.2f} -> {edited.perplexity:.2f}")
    return record
