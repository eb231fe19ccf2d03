"""Typed events a worker emits; each one is a single JSON line in the run's ``events.jsonl`` journal.

The journal is the only channel between a worker and whoever watches it: the TUI, the headless CLI and a
re-attached TUI all read the same lines, so a screen rebuilt after an SSH drop is the screen that was lost.
New event kinds are added by subclassing :class:`Event` with the ``@event`` decorator; unknown kinds read back as
:class:`UnknownEvent` so an older reader never crashes on a newer journal.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import types
import typing
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


@dataclass(frozen=True)
class DecodedEvent:
    """An event read back from one journal line, with what was wrong in the line (empty when nothing was)."""

    event: Event
    problems: tuple[str, ...] = ()


def decode_event(line: str) -> DecodedEvent:
    """Read one journal line; a field of the wrong type is coerced when that loses nothing, else left at its default.

    Raises ValueError for a line that is not JSON or not a JSON object: there is no event in it to keep. Every
    field that had to be coerced or dropped is named in ``problems``, so a reader keeps going (one bad field never
    hides a run) while the run folder can still be reported as damaged.
    """
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    problems: list[str] = []
    kind = data.pop("type", None)
    if not isinstance(kind, str):
        problems.append("it has no type" if kind is None else f"its type is {kind!r}, not a name")
        kind = "unknown" if kind is None else str(kind)
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        moment, fixed = _coerce(data.get("time", 0.0), float)
        if fixed is not None:
            problems.append(f"field 'time' of a '{kind}' event {fixed}")
        moment = 0.0 if moment is _DROPPED else moment
        return DecodedEvent(UnknownEvent(type=kind, data=data, time=moment), tuple(problems))
    hints = _field_types(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            continue
        coerced, fixed = _coerce(value, hints[key])
        if fixed is not None:
            problems.append(f"field '{key}' of a '{kind}' event {fixed}")
            if coerced is _DROPPED:
                continue
        values[key] = coerced
    return DecodedEvent(cls(**values), tuple(problems))


def event_from_json(line: str) -> Event:
    """The event in one journal line (see :func:`decode_event`); ValueError when the line holds no JSON object."""
    return decode_event(line).event


_DROPPED = object()


@functools.cache
def _field_types(cls: type[Event]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {item.name: hints[item.name] for item in dataclasses.fields(cls)}


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return f"is {text[:40] + '...' if len(text) > 40 else text}"


def _coerce(value: Any, hint: Any) -> tuple[Any, str | None]:
    """``value`` as type ``hint``, and what was wrong with it (None when it already fitted).

    A value that converts without loss (``"3"`` for an int) is kept converted; anything else is ``_DROPPED`` so the
    field takes its default.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return value, None
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if value is None:
            return (None, None) if len(options) < len(typing.get_args(hint)) else (_DROPPED, "is null")
        for option in options:
            coerced, fixed = _coerce(value, option)
            if fixed is None:
                return coerced, None
        return _coerce(value, options[0])
    if origin is dict or hint is dict:
        return (value, None) if isinstance(value, dict) else (_DROPPED, f"{_describe(value)}, not an object")
    if origin is list or hint is list:
        if not isinstance(value, list):
            return _DROPPED, f"{_describe(value)}, not a list"
        (item_type,) = typing.get_args(hint) or (Any,)
        items = [_coerce(item, item_type) for item in value]
        kept = [coerced for coerced, _ in items if coerced is not _DROPPED]
        wrong = [fixed for _, fixed in items if fixed is not None]
        return kept, (f"has an item that {wrong[0]}" if wrong else None)
    if hint is bool:
        return (value, None) if isinstance(value, bool) else (_DROPPED, f"{_describe(value)}, not true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        converted = _number(value)
        if converted is not None and converted.is_integer():
            return int(converted), f"{_describe(value)}, not a whole number"
        return _DROPPED, f"{_describe(value)}, not a whole number"
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), None
        converted = _number(value)
        return (converted, f"{_describe(value)}, not a number") if converted is not None else (
            _DROPPED, f"{_describe(value)}, not a number")
    if hint is str:
        if isinstance(value, str):
            return value, None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value), f"{_describe(value)}, not text"
        return _DROPPED, f"{_describe(value)}, not text"
    return value, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


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
class TrialCapability(Event):
    """A trial's score on the capability objective (multiple-choice accuracy), sent right after its TrialFinished
    in studies created with optimization.capability_objective, so every other run's journal keeps its shape."""

    kind: ClassVar[str] = "trial_capability"
    number: int = 0
    capability: float = 0.0
    questions: int = 0


@event
@dataclass
class StudyEstimate(Event):
    """What a trial costs on this machine and how long the study has left, as the worker measured it.

    Sent once the first trial (or batch of trials) has run, which is the calibration, and again after every later
    one; a resumed run sends one from its recorded trials before its first new trial. The figure is the median of
    the latest trials (see :mod:`heretic_tui.core.operations.trial_time`), so one slow trial does not swing it.
    """

    kind: ClassVar[str] = "study_estimate"
    seconds_per_trial: float = 0.0
    remaining_seconds: float = 0.0
    """Until the study's target is reached, from this event's time: whole batches of ``trial_batch`` trials."""
    trials_left: int = 0
    trial_batch: int = 1
    """Trials that share one forward pass (``abliteration.trial_batch``); a batch costs about as much when fewer
    trials are left than it holds, so the last partial batch counts as a whole one."""
    measured_trials: int = 0
    """How many of the latest trials the figure is the median of."""


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
    anchor_divergence: float | None = None
    """Mean KL divergence from the base model on the anchor's general text since the last log (when
    ``finetune.anchor_weight`` is on): how far the model's general language has moved."""


@event
@dataclass
class Metrics(Event):
    """Named figures a job measured (plan figures, evaluation results), shown as a small table."""

    kind: ClassVar[str] = "metrics"
    name: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@event
@dataclass
class FileProgress(Event):
    """One file of an upload: bytes of it sent so far, and bytes of the whole upload done (skipped files count)."""

    kind: ClassVar[str] = "file_progress"
    path: str = ""
    done: int = 0
    size: int = 0
    state: str = "sending"
    """'sending', 'sent', or 'already on the Hub' (same content there already, so it is not sent again)."""
    total_done: int = 0
    total: int = 0


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
