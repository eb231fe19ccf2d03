"""What the dashboard knows about one run, folded from its event journal.

The dashboard never asks the worker anything: it replays ``events.jsonl`` into this state and keeps applying live
events to it, so a dashboard opened hours later (after an SSH drop) is the same dashboard that was lost. Keeping the
fold free of Textual makes it testable with plain event lists and lets every widget render from one object.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from heretic_tui.core.runs.events import (
    ArtifactWritten,
    BaselineMeasured,
    Event,
    FileProgress,
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
    TrialStarted,
)
from heretic_tui.core.api import (
    JOB_KINDS,
    STATUS_CANCELLED,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_RUNNING,
    JobKind,
    StudySnapshot,
    WorkerSpeed,
)

MESSAGE_HISTORY = 200


@dataclass
class PhaseState:
    """One phase of a job: when it started, how far it got, and how long it took once finished."""

    name: str
    description: str = ""
    total: int | None = None
    completed: int = 0
    started_at: float = 0.0
    seconds: float | None = None
    step: str = ""
    step_completed: int = 0
    step_total: int | None = None

    @property
    def finished(self) -> bool:
        return self.seconds is not None

    def elapsed(self, now: float) -> float:
        if self.seconds is not None:
            return self.seconds
        return max(0.0, now - self.started_at)


@dataclass
class TrialRow:
    """One Optuna trial as the dashboard shows it; ``refusals`` is None while the trial is still running."""

    number: int
    params: dict[str, Any] = field(default_factory=dict)
    refusals: int | None = None
    refusal_total: int = 0
    kl: float | None = None
    seconds: float | None = None
    apply_reset_seconds: float | None = None
    started_at: float = 0.0
    worker: str = ""
    """The worker that ran it, for a study several workers share (empty otherwise)."""
    capability: float | None = None
    """Its multiple-choice accuracy, in a study with the capability objective (None otherwise)."""

    @property
    def finished(self) -> bool:
        return self.refusals is not None and self.kl is not None


@dataclass
class RunMessage:
    """A log line or warning from the journal, kept for the dashboard's message list."""

    level: str
    text: str
    time: float


@dataclass
class RunState:
    """The whole dashboard model of a run; :meth:`apply` is the only way it changes."""

    job: str = ""
    model: str = ""
    run_dir: str = ""
    status: str = STATUS_RUNNING
    started_at: float | None = None
    last_event_at: float | None = None
    resumed: bool = False
    phases: dict[str, PhaseState] = field(default_factory=dict)
    current_phase: str | None = None
    trials: dict[int, TrialRow] = field(default_factory=dict)
    trial_total: int = 0
    running_trial: int | None = None
    pareto: list[int] = field(default_factory=list)
    baseline_refusals: int | None = None
    baseline_total: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    report_path: str = ""
    error_message: str = ""
    error_traceback: str = ""
    user_error: bool = False
    cancel_reason: str = ""
    messages: list[RunMessage] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_losses: dict[int, float] = field(default_factory=dict)
    eval_losses: dict[int, float] = field(default_factory=dict)
    training_curves: dict[str, dict[int, float]] = field(default_factory=dict)
    """Learning rate, grad norm and tokens/s by step (the names of TrainingStep's fields), for the curve charts."""
    latest_step: TrainingStep | None = None
    transfer: FileProgress | None = None
    """The latest file of an upload: the file in flight, and the whole upload's bytes."""
    event_count: int = 0
    study_trials: set[int] = field(default_factory=set)
    """Trials known only from the shared study's storage (other workers' trials), replaced on every read."""
    workers: list[WorkerSpeed] = field(default_factory=list)
    """Every worker of a shared study and its speed, as the latest read of the storage found them."""
    study_estimate: StudyEstimate | None = None
    """The worker's latest measure of a trial's cost and of the study's time left (None before the first trial)."""

    @classmethod
    def from_events(cls, events: list[Event]) -> RunState:
        state = cls()
        for item in events:
            state.apply(item)
        return state

    def apply(self, item: Event) -> None:
        """Fold one event into the state; unknown kinds are counted and otherwise ignored."""
        self.event_count += 1
        self.last_event_at = item.time
        if isinstance(item, JobStarted):
            self._start(item)
        elif isinstance(item, PhaseStarted):
            self.phases[item.phase] = PhaseState(
                name=item.phase, description=item.description, total=item.total, started_at=item.time
            )
            self.current_phase = item.phase
        elif isinstance(item, Progress):
            self._progress(item)
        elif isinstance(item, PhaseFinished):
            phase = self.phases.setdefault(item.phase, PhaseState(name=item.phase, started_at=item.time))
            phase.seconds = item.seconds
            if phase.total is not None:
                phase.completed = phase.total
            if self.current_phase == item.phase:
                self.current_phase = None
        elif isinstance(item, BaselineMeasured):
            self.baseline_refusals = item.refusals
            self.baseline_total = item.total
        elif isinstance(item, TrialStarted):
            self.trials[item.number] = TrialRow(number=item.number, params=dict(item.params), started_at=item.time)
            self.trial_total = item.total or self.trial_total
            self.running_trial = item.number
            self._end_step()
        elif isinstance(item, TrialFinished):
            self._finish_trial(item)
            self._end_step()
        elif isinstance(item, TrialCapability):
            self.trials.setdefault(item.number, TrialRow(number=item.number)).capability = item.capability
        elif isinstance(item, (LogLine, JobWarning)):
            level = "warning" if isinstance(item, JobWarning) else item.level
            self.messages.append(RunMessage(level=level, text=item.message, time=item.time))
            del self.messages[:-MESSAGE_HISTORY]
        elif isinstance(item, ArtifactWritten):
            self.artifacts[item.name] = item.path
        elif isinstance(item, Metrics):
            self.metrics[item.name] = dict(item.values)
        elif isinstance(item, TrainingStep):
            self._training_step(item)
        elif isinstance(item, FileProgress):
            self.transfer = item
        elif isinstance(item, StudyEstimate):
            self.study_estimate = item
        elif isinstance(item, JobFinished):
            self.status = STATUS_FINISHED
            self.summary = dict(item.summary)
            self.report_path = item.report
            self._end()
        elif isinstance(item, JobCancelled):
            self.status = STATUS_CANCELLED
            self.cancel_reason = item.reason
            self._end()
        elif isinstance(item, JobError):
            self.status = STATUS_FAILED
            self.error_message = item.message
            self.error_traceback = item.traceback
            self.user_error = item.user_error
            self._end()

    def _start(self, item: JobStarted) -> None:
        """A job start; a resumed job keeps the trials of the earlier attempts and forgets their ending."""
        self.job = item.job or self.job
        self.model = item.model or self.model
        self.run_dir = item.run_dir or self.run_dir
        self.resumed = item.resumed
        if self.started_at is None:
            self.started_at = item.time
        self.status = STATUS_RUNNING
        self.error_message = ""
        self.error_traceback = ""
        self.user_error = False
        self.cancel_reason = ""
        self.summary = {}
        self.current_phase = None
        self.study_estimate = None
        self.trials = {number: row for number, row in self.trials.items() if row.finished}

    def _end_step(self) -> None:
        """A trial that starts or ends closes the step its phase named (a scorer judging the previous trial), so
        the phase list goes back to the trial in flight instead of a finished step."""
        if self.current_phase in self.phases:
            phase = self.phases[self.current_phase]
            phase.step, phase.step_completed, phase.step_total = "", 0, None

    def _progress(self, item: Progress) -> None:
        """Progress of a phase, or of a named step inside one (``"load: base training"`` belongs to ``load``)."""
        parent, separator, step = item.phase.partition(":")
        if separator and parent in self.phases:
            phase = self.phases[parent]
            phase.step = step.strip()
            phase.step_completed = item.completed
            phase.step_total = item.total
            return
        phase = self.phases.setdefault(item.phase, PhaseState(name=item.phase, started_at=item.time))
        phase.completed = item.completed
        if item.total is not None:
            phase.total = item.total

    def _training_step(self, item: TrainingStep) -> None:
        """A logged step; keyed by step, so the steps a resumed run repeats after its checkpoint replace the old."""
        if item.loss is not None:
            self.train_losses[item.step] = item.loss
        if item.eval_loss is not None:
            self.eval_losses[item.step] = item.eval_loss
        for name in ("learning_rate", "grad_norm", "tokens_per_second", "anchor_divergence"):
            value = getattr(item, name)
            if value is not None:
                self.training_curves.setdefault(name, {})[item.step] = value
        if item.loss is not None or self.latest_step is None or item.step >= self.latest_step.step:
            self.latest_step = item
        train = self.phases.get("train")
        if train is not None and not train.finished:
            train.completed = item.step
            train.total = item.total_steps or train.total

    def _finish_trial(self, item: TrialFinished) -> None:
        row = self.trials.setdefault(item.number, TrialRow(number=item.number))
        row.params = dict(item.params) or row.params
        row.refusals = item.refusals
        row.refusal_total = item.refusal_total
        row.kl = item.kl
        row.seconds = item.seconds
        row.apply_reset_seconds = item.apply_reset_seconds
        self.trial_total = item.total or self.trial_total
        self.pareto = list(item.pareto)
        if self.running_trial == item.number:
            self.running_trial = None

    def apply_study(self, snapshot: StudySnapshot) -> None:
        """Fold in a read of the shared study: every worker's complete and running trials, and the front over all.

        This worker's own events stay the source of its trials; the storage adds the others' and names who ran
        what. A trial the storage no longer shows (its worker died and it was failed) leaves the table.
        """
        seen = set()
        for trial in snapshot.trials:
            seen.add(trial.number)
            row = self.trials.get(trial.number)
            if row is None:
                row = self.trials[trial.number] = TrialRow(number=trial.number, started_at=trial.started or 0.0)
                self.study_trials.add(trial.number)
            row.worker = trial.worker or row.worker
            if not trial.running:
                row.params = dict(trial.params) or row.params
                row.refusals, row.kl, row.seconds = trial.refusals, trial.kl, trial.seconds
                row.capability = trial.capability if trial.capability is not None else row.capability
                row.refusal_total = row.refusal_total or self.baseline_total or 0
        for number in self.study_trials - seen:
            self.trials.pop(number, None)
        self.study_trials &= seen
        self.pareto = list(snapshot.pareto)
        self.workers = snapshot.workers

    def _end(self) -> None:
        self.running_trial = None
        self.current_phase = None
        self.trials = {number: row for number, row in self.trials.items() if row.finished}

    @property
    def kind(self) -> JobKind | None:
        """The job kind's record (phases, trials, resumable); None until the journal or job.json names the kind."""
        return JOB_KINDS.get(self.job)

    @property
    def has_trials(self) -> bool:
        """Abliteration runs have a study to plot; other jobs (export, compare) show their results instead."""
        return self.kind is not None and self.kind.has_trials

    @property
    def has_steps(self) -> bool:
        """Fine-tuning runs log optimizer steps (loss, learning rate, the trainer's own ETA)."""
        return self.kind is not None and self.kind.has_steps

    @property
    def search(self) -> dict[str, Any]:
        """How the study samples: ``random_trials``, ``guided_trials`` and ``sampler``, as the trials phase says."""
        return self.metrics.get("search", {})

    @property
    def step_total(self) -> int:
        """Planned optimizer steps: from the latest step, else the plan, else the train phase's total."""
        if self.latest_step is not None and self.latest_step.total_steps:
            return self.latest_step.total_steps
        planned = self.metrics.get("plan", {}).get("steps")
        if isinstance(planned, int):
            return planned
        train = self.phases.get("train")
        return train.total or 0 if train is not None else 0

    @property
    def finished_trials(self) -> list[TrialRow]:
        return [row for row in self.trials.values() if row.finished]

    @property
    def is_running(self) -> bool:
        return self.status == STATUS_RUNNING

    @property
    def can_resume(self) -> bool:
        """A run of a resumable kind that ended (any way) can be resumed or extended; a running one cannot."""
        return self.status != STATUS_RUNNING and self.kind is not None and self.kind.resumable

    def best_trial(self) -> TrialRow | None:
        """The trial a person most likely wants: fewest refusals, then lowest KL, among the finished ones.

        Once the engine reports its chosen trial (at the end of a run) that one wins, so the dashboard and the
        report never disagree.
        """
        chosen = self.summary.get("chosen_trial")
        if isinstance(chosen, int) and chosen in self.trials:
            return self.trials[chosen]
        rows = self.finished_trials
        if not rows:
            return None
        return min(rows, key=lambda row: (row.refusals, row.kl, row.number))

    def median_trial_seconds(self) -> float | None:
        durations = [row.seconds for row in self.finished_trials if row.seconds]
        return statistics.median(durations) if durations else None

    def running_trial_seconds(self, now: float) -> float | None:
        """How long the trial in flight has been running (its start is the time of its TrialStarted)."""
        if self.running_trial is None or not self.is_running:
            return None
        row = self.trials.get(self.running_trial)
        return max(0.0, now - row.started_at) if row is not None and row.started_at else None

    def eta_seconds(self, now: float) -> float | None:
        """Seconds until the run ends, counting down between the events that move it on.

        A study: the worker's own estimate (:class:`StudyEstimate`) less the time since it came, but never less
        than it leaves once the batch in flight is done; from a journal without one (an older worker), the median
        trial time for each trial not started yet plus what the median leaves of the trial in flight. A fine-tuning
        run: the trainer's estimate at its latest logged step, less the time since that step.
        None while nothing says how long the run takes (before the first trial or step).
        """
        if not self.is_running:
            return None
        if self.has_steps:
            step = self.latest_step
            if step is None or step.eta_seconds is None or self.current_phase != "train":
                return None
            return max(0.0, step.eta_seconds - max(0.0, now - step.time))
        estimate = self.study_estimate
        if self.has_trials and self.current_phase == "trials" and estimate is not None:
            in_flight = min(estimate.trial_batch, estimate.trials_left) * estimate.seconds_per_trial
            since = max(0.0, now - estimate.time)
            return max(0.0, estimate.remaining_seconds - in_flight, estimate.remaining_seconds - since)
        if self.has_trials and self.trial_total and self.current_phase == "trials":
            median = self.median_trial_seconds()
            if median is None:
                return None
            finished = len(self.finished_trials)
            in_flight = self.running_trial_seconds(now)
            not_started = max(0, self.trial_total - finished - (1 if in_flight is not None else 0))
            left_of_running = max(0.0, median - in_flight) if in_flight is not None else 0.0
            return median * not_started + left_of_running
        return None

    def phase_eta_seconds(self, now: float) -> float | None:
        """Seconds until the current phase ends, from its own rate so far (None for a phase without a count)."""
        if not self.is_running or self.current_phase is None:
            return None
        phase = self.phases.get(self.current_phase)
        if phase is None or not phase.total or phase.completed <= 0:
            return None
        elapsed = phase.elapsed(now)
        return elapsed / phase.completed * max(0, phase.total - phase.completed)

    def elapsed_seconds(self, now: float) -> float | None:
        """Wall time since the job started; a finished job stops its clock at its last event."""
        if self.started_at is None:
            return None
        end = now if self.is_running else (self.last_event_at or now)
        return max(0.0, end - self.started_at)
