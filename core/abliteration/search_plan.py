"""How a study splits its trials between random exploration and TPE: a pure function of the settings.

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
