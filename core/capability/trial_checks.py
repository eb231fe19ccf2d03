"""The capability checks of an abliteration run: the original model and the chosen trial, side by side."""

from __future__ import annotations

from typing import Any

from heretic_tui.core.abliteration.ablation import Abliterator, TrialParameters
from heretic_tui.core.capability.checks import compare_results, run_checks
from heretic_tui.core.capability.multiple_choice import ITEMS
from heretic_tui.core.models.loading import LoadedModel
from heretic_tui.core.runs.worker import JobContext


def check_chosen_trial(context: JobContext, loaded: LoadedModel, abliterator: Abliterator, trial: int,
                       parameters: dict[str, Any], batch_size: int, questions: int) -> dict[str, Any]:
    """Both checks on the unmodified model, then on it with the trial's edit (undone afterwards)."""
    questions = min(questions, len(ITEMS))
    with context.phase("capability", 2 * questions,
                       f"capability checks: the original model and trial {trial}") as progress:
        original = run_checks(loaded, batch_size, questions, progress)
        abliterator.apply(TrialParameters.from_flat(parameters))
        try:
            edited = run_checks(loaded, batch_size, questions, lambda done: progress(questions + done))
        finally:
            abliterator.reset()
    record = compare_results(original, edited)
    record["trial_number"] = trial
    change = record["accuracy_change"]
    context.log(f"capability: multiple choice {original.accuracy:.1%} -> {edited.accuracy:.1%} (change "
                f"{change['value']:+.1%}, 95% CI {change['low']:+.1%} to {change['high']:+.1%}); perplexity "
                f"{original.perplexity:.2f} -> {edited.perplexity:.2f}")
    return record
