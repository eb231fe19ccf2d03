"""Following a job from the command line: readable progress on stderr, Ctrl-C as a clean cancel, the exit code.

Headless runs print one line per meaningful event (a script can also read the run's events.jsonl); the exit code
is the one the worker decided (see :data:`heretic_tui.core.errors.EXIT_CODES`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from heretic_tui.core.errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK
from heretic_tui.core.runs.events import (
    ArtifactWritten,
    BaselineMeasured,
    Event,
    JobCancelled,
    JobError,
    JobFinished,
    JobStarted,
    JobWarning,
    LogLine,
    Metrics,
    PhaseFinished,
    PhaseStarted,
    Progress,
    StudyEstimate,
    TrainingStep,
    TrialCapability,
    TrialFinished,
)
from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.operations.trial_time import approximate_duration


WARNING_KEYS = ("problems",)
"""Metrics entries that are sentences, not figures: the job also sends each one as a warning line of its own."""


def progress_line(text: str) -> None:
    """A line for the person at the terminal (stderr), so stdout keeps only the result a script captures."""
    print(text, file=sys.stderr, flush=True)


class ProgressPrinter:
    """Readable progress lines on stderr for headless runs (a script can also read events.jsonl)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.time()
        self._last_progress: dict[str, float] = {}
        self._estimate: StudyEstimate | None = None

    def line(self, text: str) -> None:
        elapsed = time.time() - self.started
        print(f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] {text}", file=self.stream, flush=True)

    def _time_left(self, now: float) -> str:
        """What the worker's latest estimate leaves of the study (it comes just before the trials it counted)."""
        estimate = self._estimate
        if estimate is None:
            return ""
        left = max(0.0, estimate.remaining_seconds - max(0.0, now - estimate.time))
        if not estimate.trials_left:
            return ""
        return f"  · {approximate_duration(left)} left at {estimate.seconds_per_trial:.1f}s per trial"

    def __call__(self, item: Event) -> None:
        if isinstance(item, JobStarted):
            self.line(f"{'resumed' if item.resumed else 'started'} {item.job} of {item.model} in {item.run_dir}")
        elif isinstance(item, PhaseStarted):
            count = f" ({item.total})" if item.total else ""
            self.line(f"{item.phase}{count}: {item.description}")
        elif isinstance(item, Progress):
            now = time.time()
            if item.completed == item.total or now - self._last_progress.get(item.phase, 0.0) > 5.0:
                self._last_progress[item.phase] = now
                total = f"/{item.total}" if item.total else ""
                self.line(f"  {item.phase}: {item.completed}{total}")
        elif isinstance(item, PhaseFinished):
            self.line(f"  {item.phase} done in {item.seconds:.1f}s")
        elif isinstance(item, BaselineMeasured):
            self.line(f"baseline: {item.refusals}/{item.total} refusals")
        elif isinstance(item, StudyEstimate):
            if self._estimate is None and item.trials_left:
                measured = ("the first trial" if item.measured_trials == 1
                            else f"the median of the latest {item.measured_trials} trials")
                self.line(f"time: {item.seconds_per_trial:.1f}s per trial on this machine ({measured}), "
                          f"{approximate_duration(item.remaining_seconds)} for the {item.trials_left} trials left")
            self._estimate = item
        elif isinstance(item, TrialFinished):
            self.line(f"trial {item.number} (target {item.total} trials): refusals {item.refusals}/{item.refusal_total}, "
                      f"KL {item.kl:.4f}, {item.seconds:.2f}s  (Pareto front: {len(item.pareto)} trials)"
                      + self._time_left(item.time))
        elif isinstance(item, TrialCapability):
            self.line(f"  trial {item.number} capability: {item.capability:.0%} of {item.questions} questions")
        elif isinstance(item, TrainingStep):
            parts = [f"step {item.step}/{item.total_steps}"]
            for name in ("loss", "eval_loss", "learning_rate", "tokens_per_second"):
                value = getattr(item, name)
                if value is not None:
                    parts.append(f"{name} {value:.4g}")
            self.line(", ".join(parts))
        elif isinstance(item, Metrics):
            figures = {key: value for key, value in item.values.items() if key not in WARNING_KEYS}
            self.line(f"{item.name}: " + ", ".join(f"{key} {value}" for key, value in figures.items()))
        elif isinstance(item, (LogLine, JobWarning)):
            prefix = "warning: " if isinstance(item, JobWarning) else ""
            self.line(prefix + item.message)
        elif isinstance(item, ArtifactWritten):
            self.line(f"wrote {item.name}: {item.path}")
        elif isinstance(item, JobError):
            self.line(f"error: {item.message}")
        elif isinstance(item, JobCancelled):
            self.line(f"cancelled: {item.reason}")
        elif isinstance(item, JobFinished):
            self.line("finished")


def follow(handle: JobHandle, on_event: Callable[[Event], None]) -> tuple[int, Event | None]:
    """Print a job's events until it ends; Ctrl-C asks the worker to cancel gracefully, a second one kills it."""
    last: Event | None = None
    interrupts = 0
    while True:
        try:
            for item in handle.events():
                on_event(item)
                last = item
            break
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                print("cancelling: the worker finishes the trial or step in flight and saves (Ctrl-C again to stop "
                      "at once)", file=sys.stderr, flush=True)
                handle.request_cancel()
            else:
                handle.kill()
            continue
    return exit_code_for(last), last


def exit_code_for(last: Event | None) -> int:
    if isinstance(last, JobFinished):
        return EXIT_OK
    if isinstance(last, JobCancelled):
        return EXIT_CANCELLED
    if isinstance(last, JobError):
        if last.exit_code is not None:
            return last.exit_code
        if last.user_error:
            return EXIT_BAD_INPUT
    return EXIT_FAILED


def follow_headless(handle: JobHandle) -> tuple[int, Event | None]:
    """Announce the run folder, then print the job's progress until it ends."""
    progress_line(f"run folder: {handle.run.path}")
    return follow(handle, ProgressPrinter())


def launch_app(**options: Any) -> int:
    """Hand over to the full-screen app; the only place the command line imports the TUI, and only when asked."""
    from heretic_tui.tui.app import launch

    return launch(**options)
