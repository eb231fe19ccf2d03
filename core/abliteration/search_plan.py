"""How a study splits its trials between random exploration and TPE, and how many it asks at once: pure functions.

It lives apart from the Optuna study module so that screens can show the plan ("60 trials: 20 random, then TPE")
without importing Optuna or torch.
"""

from __future__ import annotations

from heretic_tui.core.settings import OptimizationSettings

MINIMUM_RANDOM_TRIALS = 4
"""The fewest random trials a derived count gives: TPE needs a few observations before its model means anything,
and four keep TPE in charge of the majority of every run of ten trials or more."""


def random_trial_count(settings: OptimizationSettings) -> int:
    """How many trials of the run are random before TPE models the results.

    ``startup_trials`` set by the user is kept (capped at the run's length). Left at 0 it is derived: a third of
    the trials, at least :data:`MINIMUM_RANDOM_TRIALS`, so a short run is not pure random search.
    """
    if settings.startup_trials:
        return min(settings.startup_trials, settings.trials)
    return min(settings.trials, max(MINIMUM_RANDOM_TRIALS, round(settings.trials / 3)))


OBSERVATIONS_PER_PENDING_TRIAL = 20
"""A guided batch holds at most one trial per this many completed ones. The trials of a batch are asked before any
of them is told, so TPE models them from the same observations (the constant liar only keeps them apart); a study
that batches from its first guided trial spends its short budget on guesses it cannot learn from (at 30 trials
K = 4 lost half the best KL on the qwen3-spread toy). With one pending trial per twenty observed, a batch is a small
share of what the model knows: one at a time up to 40 completed trials, then 2, 4 from 80, 8 from 160. One per ten
kept the median at 100 trials but lost a third of the best KL on one seed of three; one per twenty lost none."""

TRIALS_LEFT_PER_BATCHED_TRIAL = 4
"""A guided batch holds at most a quarter of the trials the study still lacks, so a study's last trials (where TPE
refines what it found) still learn from each other instead of being asked all at once."""


def trials_to_ask(trial_batch: int, random_trials: int, target: int, completed: int) -> int:
    """How many trials the next batch asks: at most ``trial_batch``, and never a batch that costs search quality.

    The first ``random_trials`` trials (random ones, and enqueued warm-start trials among them) are independent, so
    they are asked ``trial_batch`` at a time, stopping where the random part ends so a batch never mixes random
    and guided trials (TPE samples at random while fewer than ``random_trials`` have completed, so a batch that
    crossed the boundary would add random trials). Guided batches grow with what TPE has observed and shrink as
    the budget runs out (:data:`OBSERVATIONS_PER_PENDING_TRIAL`, :data:`TRIALS_LEFT_PER_BATCHED_TRIAL`). At least
    one trial while the study lacks any, 0 once ``completed`` reaches ``target``.
    """
    left = target - completed
    if left <= 0:
        return 0
    if completed < random_trials:
        return max(1, min(trial_batch, random_trials - completed, left))
    guided = min(completed // OBSERVATIONS_PER_PENDING_TRIAL, left // TRIALS_LEFT_PER_BATCHED_TRIAL)
    return max(1, min(trial_batch, guided))


def pass_sizes(trial_batch: int, random_trials: int, target: int, completed: int) -> list[int]:
    """The trials each remaining pass of the study holds under :func:`trials_to_ask`, in order (the time estimate
    counts passes, not trials: a pass costs about the same whatever it holds)."""
    sizes = []
    while completed < target:
        size = trials_to_ask(trial_batch, random_trials, target, completed)
        sizes.append(size)
        completed += size
    return sizes
