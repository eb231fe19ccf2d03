"""How long a trial takes and how long a study has left, from trials measured on this machine.

The plan before a download can only guess from a table of memory bandwidth (:mod:`.plan`); once the model is
loaded the study's own trials are the calibration: the first one (or the first batch) gives a figure, and every
later one refines it. The figure is the median of the latest :data:`RECENT_TRIALS` trials, not of all of them: a
trial's time depends on its answers (a sure refusal stops generating early, an answer runs to
``refusal_max_tokens``), so the pace changes as the search finds ablations that stop the refusals, and the median
keeps one slow trial (a judge's retry, a pause of the machine) from swinging it.

Batched trials (``abliteration.trial_batch``) record each trial's share of its batch's time, so trials per minute
read the same either way; a batch holding fewer trials than the setting (the last one) costs about as much as a
full one, because generation reads every weight once per token whatever the number of rows, so what is left is
counted in passes: those the batch schedule (``search_plan.pass_sizes``) still runs, each at the cost of the next.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from heretic_tui.core.runs.events import StudyEstimate

RECENT_TRIALS = 8
"""How many of the latest trials the estimate takes the median of."""


def estimate_study(durations: Sequence[float], trials_left: int, trial_batch: int = 1,
                   passes: Sequence[int] | None = None) -> StudyEstimate | None:
    """The estimate from the trials' recorded seconds (oldest first); None before any trial has a time.

    ``passes``: how many trials each remaining pass holds (the batch schedule,
    :func:`~heretic_tui.core.abliteration.search_plan.pass_sizes`); without it every pass is a full batch."""
    measured = [seconds for seconds in durations if seconds > 0][-RECENT_TRIALS:]
    if not measured:
        return None
    per_trial = statistics.median(measured)
    remaining = (remaining_seconds(per_trial, trials_left, trial_batch) if passes is None
                 else scheduled_seconds(per_trial, passes))
    return StudyEstimate(seconds_per_trial=per_trial, remaining_seconds=remaining,
                         trials_left=max(0, trials_left), trial_batch=max(1, trial_batch),
                         measured_trials=len(measured))


def remaining_seconds(per_trial: float, trials_left: int, trial_batch: int = 1) -> float:
    """Seconds for ``trials_left`` trials at ``per_trial`` each, in whole batches of ``trial_batch``."""
    batch = max(1, trial_batch)
    return math.ceil(max(0, trials_left) / batch) * batch * per_trial


def scheduled_seconds(per_trial: float, passes: Sequence[int]) -> float:
    """Seconds for the remaining passes: each costs what the next one does (``per_trial`` was measured on passes
    of about its size, and a pass costs about the same whatever it holds)."""
    if not passes:
        return 0.0
    return len(passes) * passes[0] * per_trial


def approximate_duration(seconds: float) -> str:
    """A duration as an estimate reads: ``about 40 s``, ``about 12 min``, ``about 3.5 h``."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
