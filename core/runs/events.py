"""Typed events a worker emits; each one is a single JSON line in the run's ``events.jsonl`` journal.

The journal is the only channel between a worker and whoever watches it: the TUI, the headless CLI and a
re-attached TUI all read the same lines, so a screen rebuilt after an SSH drop is the screen that was lost.
New event kinds are added by subclassing :class:`Event` with the ``@event`` decorator; unknown kinds read back as
:class:`UnknownEvent` so an older reader never crashes on a newer journal.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

EVENT_TYPES: dict[str, type[Event]] = {}

E = TypeVar("E", bound="type[Event]")


def event(cls: E) -> E:
    """Register an event class under its ``kind`` so journals can be read back into the right type."""
    EVENT_TYPES[cls.kind] = cls
    return cls


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["type"] = self.kind
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)

    @property
    def terminal(self) -> bool:
        """True for the event that ends a job (finished, failed or cancelled)."""
        return False


def event_from_json(line: str) -> Event:
    data: dict[str, Any] = json.loads(line)
    kind = data.pop("type", "unknown")
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return UnknownEvent(type=kind, data=data, time=data.get("time", 0.0))
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in data.items() if key in names})


@event
@dataclass
class UnknownEvent(Event):
    kind: ClassVar[str] = "unknown"
    type: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@event
@dataclass
class JobStarted(Event):
    kind: ClassVar[str] = "job_started"
    job: str = ""
    run_dir: str = ""
    model: str = ""
    pid: int = 0
    resumed: bool = False


@event
@dataclass
class PhaseStarted(Event):
    kind: ClassVar[str] = "phase_started"
    phase: str = ""
    total: int | None = None
    description: str = ""


@event
@dataclass
class Progress(Event):
    kind: ClassVar[str] = "progress"
    phase: str = ""
    completed: int = 0
    total: int | None = None


@event
@dataclass
class PhaseFinished(Event):
    kind: ClassVar[str] = "phase_finished"
    phase: str = ""
    seconds: float = 0.0


@event
@dataclass
class LogLine(Event):
    kind: ClassVar[str] = "log"
    message: str = ""
    level: str = "info"


@event
@dataclass
class JobWarning(Event):
    kind: ClassVar[str] = "warning"
    message: str = ""


@event
@dataclass
class BaselineMeasured(Event):
    """The unmodified model's refusals on the harmful evaluation prompts."""

    kind: ClassVar[str] = "baseline"
    refusals: int = 0
    total: int = 0


@event
@dataclass
class TrialStarted(Event):
    kind: ClassVar[str] = "trial_started"
    number: int = 0
    total: int = 0
    params: dict[str, Any] = field(default_factory=dict)


@event
@dataclass
class TrialFinished(Event):
    kind: ClassVar[str] = "trial_finished"
    number: int = 0
    total: int = 0
    refusals: int = 0
    refusal_total: int = 0
    kl: float = 0.0
    seconds: float = 0.0
    apply_reset_seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    pareto: list[int] = field(default_factory=list)


@event
@dataclass
class TrainingStep(Event):
    """One logged optimizer step of a fine-tuning run."""

    kind: ClassVar[str] = "training_step"
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    eval_loss: float | None = None
    perplexity: float | None = None
    epoch: float | None = None
    eta_seconds: float | None = None


@event
@dataclass
class Metrics(Event):
    """Named figures a job measured (plan figures, evaluation results), shown as a small table."""

    kind: ClassVar[str] = "metrics"
    name: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@event
@dataclass
class ArtifactWritten(Event):
    """A finished output (exported model, adapter, report) the user may want to open next."""

    kind: ClassVar[str] = "artifact"
    name: str = ""
    path: str = ""


@event
@dataclass
class JobError(Event):
    kind: ClassVar[str] = "error"
    message: str = ""
    traceback: str = ""
    user_error: bool = False
    exit_code: int | None = None
    """The process exit code this error stands for (see core.errors.EXIT_CODES); None in older journals."""

    @property
    def terminal(self) -> bool:
        return True


@event
@dataclass
class JobFinished(Event):
    kind: ClassVar[str] = "job_finished"
    report: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return True


@event
@dataclass
class JobCancelled(Event):
    kind: ClassVar[str] = "job_cancelled"
    reason: str = ""

    @property
    def terminal(self) -> bool:
        return True
