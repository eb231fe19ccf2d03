"""The one record of every job kind: how it starts, what the worker runs, whether it resumes, what it shows.

The worker, the command line, the run state the screens keep and the screens themselves read this table instead
of keeping their own lists of kinds. Entry points are ``module:function`` strings resolved on use, because the
pipelines import torch and transformers and a record must be cheap to read (the home screen lists runs of every
kind without loading any of that).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import UserInputError


@dataclass(frozen=True)
class JobKind:
    """One kind of job: its name in job.json, its entry points and what its dashboard shows."""

    name: str
    title: str
    runner: str
    """``module:function`` the worker calls with its JobContext; returns the summary of JobFinished."""
    starter: str | None = None
    """``module:function(settings, run_dir, resume=...)`` for kinds that start (or resume) from settings alone."""
    resumable: bool = False
    has_trials: bool = False
    has_steps: bool = False
    phases: tuple[tuple[str, str], ...] = ()
    """Phase name and display title, in the order the pipeline runs them."""
    optional_phases: tuple[str, ...] = ()
    """Phases that only some runs have (shown once they start, never as 'pending')."""
    model_role: str | None = None
    """The registry role of a model this kind writes ("abliterated", "fine-tuned"), when its heretic.json has none."""

    @property
    def phase_titles(self) -> dict[str, str]:
        return dict(self.phases)

    def run_function(self) -> Callable[[Any], dict[str, Any]]:
        return _resolve(self.runner)

    def start_function(self) -> Callable[..., Any]:
        if self.starter is None:
            raise UserInputError(f"A '{self.name}' job cannot be started or resumed from settings alone.")
        return _resolve(self.starter)


def _resolve(target: str) -> Callable[..., Any]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            name="abliterate",
            title="Abliteration",
            runner="heretic_tui.core.abliteration.job:run",
            starter="heretic_tui.core.abliteration.job:start_abliteration",
            resumable=True,
            has_trials=True,
            phases=(
                ("load", "Load model"),
                ("prompts", "Prompts"),
                ("batch_size", "Batch size"),
                ("residuals", "Residuals"),
                ("directions", "Directions"),
                ("baseline", "Baseline"),
                ("trials", "Trials"),
                ("export", "Export"),
            ),
            optional_phases=("export",),
            model_role="abliterated",
        ),
        JobKind(
            name="finetune",
            title="Fine-tuning",
            runner="heretic_tui.core.finetuning.job:run",
            starter="heretic_tui.core.finetuning.job:start_finetune",
            resumable=True,
            has_steps=True,
            phases=(
                ("load", "Load model"),
                ("data", "Data"),
                ("prepare", "Prepare"),
                ("evaluate_before", "Eval before"),
                ("train", "Train"),
                ("evaluate_after", "Eval after"),
                ("save_adapter", "Adapter"),
                ("merge", "Merge"),
                ("smoke_test", "Smoke test"),
            ),
            optional_phases=("merge",),
            model_role="fine-tuned",
        ),
        JobKind(
            name="export",
            title="Export",
            runner="heretic_tui.core.shipping.export:run_export_job",
            phases=(("load", "Load model"), ("export", "Export")),
            model_role="abliterated",
        ),
        JobKind(
            name="compare",
            title="Comparison",
            runner="heretic_tui.core.shipping.compare:run",
        ),
        JobKind(
            name="upload",
            title="Upload",
            runner="heretic_tui.core.shipping.upload_job:run",
            starter="heretic_tui.core.shipping.upload_job:resume_upload",
            resumable=True,
            phases=(("check", "Check folder"), ("prepare", "Repository"), ("upload", "Send files"),
                    ("commit", "Commit")),
        ),
        JobKind(
            name="serve",
            title="Server",
            runner="heretic_tui.core.serving.job:run",
            phases=(("load", "Load models"), ("serve", "Serving")),
        ),
    )
}


def job_kind(name: str) -> JobKind:
    """The record of a kind named in job.json; an unknown name is a damaged or foreign run folder."""
    try:
        return JOB_KINDS[name]
    except KeyError:
        raise UserInputError(
            f"Unknown job kind {name!r} in job.json; known kinds: {', '.join(sorted(JOB_KINDS))}. "
            "The run folder was written by another program or is damaged."
        ) from None


def start_job_of_kind(kind: str, settings: Any, run_dir: Path | None = None, resume: bool = False) -> Any:
    """Start (or resume) a run of ``kind`` from settings; kinds without a settings-only start say so."""
    return job_kind(kind).start_function()(settings, run_dir, resume=resume)
