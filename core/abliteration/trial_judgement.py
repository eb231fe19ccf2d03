"""Judging one trial's (or the baseline's) responses inside the abliteration job, with progress and a record.

Kept apart from the job so the job only says when to judge: after generation and after the trial's edit is undone
(see :mod:`~heretic_tui.core.abliteration.evaluation`). The scorer's progress is reported as a step of the job's
current phase ("trials: judge trial 12"), so a slow judge shows on the dashboard instead of stalling it.
"""

from __future__ import annotations

from collections.abc import Sequence

from heretic_tui.core.abliteration.evaluation import Evaluator
from heretic_tui.core.abliteration.responses import BASELINE, save_responses
from heretic_tui.core.abliteration.scoring.base import Verdict
from heretic_tui.core.runs.worker import JobContext


def judge_responses(context: JobContext, phase: str, evaluator: Evaluator, trial: int | str,
                    responses: Sequence[str]) -> list[Verdict]:
    """The verdicts on ``responses``, stored with them in the run folder."""
    label = "the baseline" if trial == BASELINE else f"trial {trial}"
    step = f"{phase}: {evaluator.scorer.name} judging {label}"
    verdicts = evaluator.score(responses, lambda done: context.progress(step, done, len(responses)))
    save_responses(context.run.path, trial, evaluator.harmful_prompts, responses, verdicts, evaluator.scorer.name)
    return verdicts
