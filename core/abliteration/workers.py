"""Several workers on one study: who ran which trial, heartbeats, retries, the exact target, shared directions.

Optuna does most of it: an RDB storage numbers trials under a row lock (no two workers get the same number), a
worker that stops beating has its trial failed by whoever notices first, and
``RetryHeartbeatStaleTrialCallback`` queues that trial's parameters again for the next worker that asks. With
ask-and-tell (the trial loop is ours, not ``study.optimize``) the heartbeat thread and the stale check are ours to
run, which :func:`start_heartbeat` and :func:`retry_abandoned_trials` do.

The target count is ours too. Several workers finishing at once must not overshoot it, so a worker asks for a trial
only while the completed and running trials leave room (:func:`room_for_another`), and a trial asked at the same
instant as another is kept only if fewer than the target trials (complete, running or queued) have a lower number
(:func:`is_surplus`); trial numbers give every worker the same order, so exactly one of two racing workers gives its
trial back. A retried trial fills the place its failed trial left.

The refusal directions are computed once and shared through the study itself (a user attribute holding the
safetensors file, with the fingerprint of the settings and prompts that shape them), so every worker, on any box,
ablates the same directions; a worker whose settings would shape different ones is refused.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.trial import TrialState

from heretic_tui.core.atomic_files import write_bytes_atomically
from heretic_tui.core.errors import UserInputError

WORKER_ATTRIBUTE = "worker"
"""The trial user attribute naming the worker that ran it."""
SURPLUS_ATTRIBUTE = "surplus"
"""Set on a trial given back unrun because the study already had its target count claimed."""
DIRECTIONS_ATTRIBUTE = "heretic_tui_directions"
"""The study user attribute holding the shared directions.safetensors, base64-encoded."""
FINGERPRINT_ATTRIBUTE = "heretic_tui_directions_fingerprint"
"""The study user attribute holding the fingerprint of the settings and prompts the shared directions come from."""

Directions = TypeVar("Directions")

WAIT_SECONDS = 1.0
"""How often a worker with nothing to ask looks again (trials of others in flight, one of them may fail)."""


def worker_name() -> str:
    """This worker in trial records and screens: host, the GPUs it sees, and its pid."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu = f"/gpu{devices}" if devices else ""
    return f"{socket.gethostname()}{gpu}/{os.getpid()}"


def heartbeat_enabled(study: optuna.Study) -> bool:
    return optuna.storages._heartbeat.is_heartbeat_enabled(study._storage)


CLAIM_ATTRIBUTE = "claimed"
"""Set to the trial's own number once its worker beats for it (see :func:`retry_abandoned_trials`)."""
UNCLAIMED_SECONDS = 120.0
"""How long a running trial may stay unclaimed before it counts as abandoned (see below)."""


def retry_abandoned_trials(study: optuna.Study, now: float | None = None) -> None:
    """Fail the trials whose worker stopped beating and queue their retries (a no-op without heartbeats).

    Optuna never finds a trial stale that has not beaten once, and a worker killed between asking a trial and its
    first beat (a few milliseconds) would leave one running for ever, holding a place of the target. A worker
    claims the trial right after that first beat (:func:`start_heartbeat`), so a trial still running unclaimed long
    after it started (:data:`UNCLAIMED_SECONDS`, or six heartbeats, so the boxes' clocks need not agree closely) is
    abandoned too. The claim holds the trial's own number because a retry inherits the failed trial's attributes.
    ``now`` is the current time (seconds since the epoch; the clock by default).
    """
    optuna.storages.fail_stale_trials(study)
    if not heartbeat_enabled(study):
        return
    storage = study._storage
    limit = max(UNCLAIMED_SECONDS, 6.0 * storage.get_heartbeat_interval())
    now = time.time() if now is None else now
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if now - started < limit or trial.user_attrs.get(CLAIM_ATTRIBUTE) == trial.number:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if callback is not None:
            callback(study, storage.get_trial(trial._trial_id))


def _count(study: optuna.Study, states: tuple[TrialState, ...], below: int | None = None) -> int:
    trials = study.get_trials(deepcopy=False, states=states)
    return len(trials) if below is None else sum(1 for trial in trials if trial.number < below)


def missing_trials(study: optuna.Study, target: int) -> int:
    """How many completed trials the study still lacks to reach ``target``."""
    return max(0, target - _count(study, (TrialState.COMPLETE,)))


def room_for_another(study: optuna.Study, target: int) -> bool:
    """True while the completed and running trials of every worker leave room for one more below the target.

    Queued retries (WAITING) do not count here: asking is what runs them."""
    return _count(study, (TrialState.COMPLETE, TrialState.RUNNING)) < target


def is_surplus(study: optuna.Study, number: int, target: int) -> bool:
    """True when ``target`` trials (complete, running or queued) already have a number below this one."""
    return _count(study, (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING), below=number) >= target


def retried_number(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The trial this one runs again after its worker stopped answering (None for a freshly sampled trial)."""
    value = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(
        study._storage.get_trial(trial._trial_id))
    return value if isinstance(value, int) else None


def give_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """Fail a trial that must not run (the target is already claimed), marked so reports can tell why."""
    trial.set_user_attr(SURPLUS_ATTRIBUTE, True)
    study.tell(trial, state=TrialState.FAIL)


def still_running(study: optuna.Study, trial: optuna.Trial) -> bool:
    """False when another worker failed this trial meanwhile (its heartbeat was late), so its result must not count."""
    return study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING


def start_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Beat for ``trial`` until it is finished, so the other workers fail and retry it once this worker is gone.

    Called right after the trial is asked: the first beat is recorded before anything else happens to it, because
    Optuna never finds a trial stale that has not beaten once. The beating thread ends by itself once the trial is
    told (or failed by someone else), or when the database stops answering; it is a daemon, so a worker that ends
    never waits for it.
    """
    if not heartbeat_enabled(study):
        return
    storage = study._storage
    interval = storage.get_heartbeat_interval()
    storage.record_heartbeat(trial._trial_id)
    trial.set_user_attr(CLAIM_ATTRIBUTE, trial.number)

    def beat() -> None:
        while True:
            time.sleep(interval)
            try:
                if storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
                    return
                storage.record_heartbeat(trial._trial_id)
            except Exception:
                return

    threading.Thread(target=beat, name=f"heartbeat-trial-{trial.number}", daemon=True).start()


def wait_for_others(check_cancelled: Callable[[], None]) -> None:
    """Pause while other workers' trials fill the target (a failed one comes back as a retry to ask for)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        check_cancelled()
        time.sleep(0.1)


def share_directions(study: optuna.Study, fingerprint: str, local: Path, compute: Callable[[], Directions],
                     log: Callable[[str], None]) -> Directions:
    """The study's directions: the ones another worker stored (written to ``local`` first), else ``compute()``'s.

    ``compute`` reads ``local`` when it holds sound directions and computes them otherwise; what it leaves in
    ``local`` is then stored for the other workers, unless one of them stored theirs meanwhile (that copy wins, so
    every worker ablates the same directions).
    """
    stored = _stored_directions(study, fingerprint)
    if stored is not None:
        write_bytes_atomically(local, stored)
        log("using the refusal directions this study's workers share")
        return compute()
    result = compute()
    again = _stored_directions(study, fingerprint)
    if again is not None:
        write_bytes_atomically(local, again)
        log("another worker stored the study's refusal directions first; using those")
        return compute()
    study.set_user_attr(FINGERPRINT_ATTRIBUTE, fingerprint)
    study.set_user_attr(DIRECTIONS_ATTRIBUTE, base64.b64encode(local.read_bytes()).decode("ascii"))
    return result


def _stored_directions(study: optuna.Study, fingerprint: str) -> bytes | None:
    attributes = study.user_attrs
    stored = attributes.get(FINGERPRINT_ATTRIBUTE)
    data = attributes.get(DIRECTIONS_ATTRIBUTE)
    if stored is None or not isinstance(data, str):
        return None
    if stored != fingerprint:
        raise UserInputError(
            "This worker's settings or prompts would shape other refusal directions than the ones the study's "
            "workers share (the model, the direction prompts, the system prompt or a setting of [abliteration] "
            "differs), so its trials would not be comparable. Join with the study's own settings: no --config, and "
            "no --set of those keys."
        )
    return base64.b64decode(data)
