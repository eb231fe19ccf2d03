"""Where lm-eval results are kept: a run's ``evaluation.json`` (mirrored into report.json) and an export's card.

A run's results live in their own file, ``RUN/evaluation.json``, because the abliteration worker rewrites report.json
whole (on every resume, at the end): the worker copies the file into the report's ``evaluation`` key each time, and
``evaluate`` updates that key itself when no worker holds the run. Results merge task by task, so evaluating trial 3
on one task and later on another keeps both; each task's result records the limit and shots it was measured with,
because the numbers depend on them. An export (or any folder with heretic.json) keeps them under ``evaluation`` in
heretic.json, and its model card is rendered again from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock

from heretic_tui.core.atomic_files import read_json_object, write_json_atomically, write_text_atomically
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.run_directory import RunDirectory

EVALUATION_FILE = "evaluation.json"
EVALUATION_KEY = "evaluation"
ORIGINAL_KEY = "original"
TRIALS_KEY = "trials"
MODEL_KEY = "model"


def evaluation_path(run_path: Path) -> Path:
    return Path(run_path) / EVALUATION_FILE


def read_evaluation(run_path: Path) -> dict[str, Any] | None:
    """The run's lm-eval results (``original`` and ``trials`` by number), or None when none were recorded."""
    document = read_json_object(evaluation_path(run_path))
    return document or None


def trial_evaluation(document: dict[str, Any] | None, trial: int) -> dict[str, Any] | None:
    """One trial's results beside the original's, as an export's heretic.json keeps them; None when not evaluated."""
    if not document or str(trial) not in document.get(TRIALS_KEY, {}):
        return None
    return {"harness": document.get("harness"), "version": document.get("version"),
            ORIGINAL_KEY: document.get(ORIGINAL_KEY) or None, MODEL_KEY: document[TRIALS_KEY][str(trial)]}


def evaluation_entry(run_path: Path, trial: int | None = None) -> dict[str, Any]:
    """``{"evaluation": ...}`` for report.json (every trial's results) or, given a trial, for an export's
    heretic.json (that trial's); empty when nothing was evaluated, so such files keep the keys they always had."""
    document = read_evaluation(run_path)
    if trial is not None:
        document = trial_evaluation(document, trial)
    return {EVALUATION_KEY: document} if document else {}


def _merge(target: dict[str, Any], results: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(target or {})
    merged.update(results or {})
    return merged


def record_run_evaluation(run: RunDirectory, trial: int, harness: dict[str, str], original: dict[str, Any] | None,
                          edited: dict[str, Any]) -> tuple[Path, bool]:
    """Merge a trial's results (and the original's) into evaluation.json, then into report.json when no worker holds
    the run; returns the file and whether the report was updated now (else its worker copies it in)."""
    from heretic_tui.core.runs.run_lock import RunLock

    path = evaluation_path(run.path)
    with FileLock(str(path) + ".lock"):
        document = read_json_object(path)
        document.update(harness)
        document[ORIGINAL_KEY] = _merge(document.get(ORIGINAL_KEY, {}), original)
        trials = dict(document.get(TRIALS_KEY, {}))
        trials[str(trial)] = _merge(trials.get(str(trial), {}), edited)
        document[TRIALS_KEY] = trials
        write_json_atomically(path, document)
    try:
        lock = RunLock.acquire(run)
    except UserInputError:
        return path, False
    try:
        report = run.read_report()
        if report is None:
            return path, False
        report[EVALUATION_KEY] = read_evaluation(run.path)
        write_json_atomically(run.report_path, report)
    finally:
        lock.close()
    return path, True


def record_folder_evaluation(folder: Path, harness: dict[str, str], original: dict[str, Any] | None,
                             edited: dict[str, Any]) -> Path:
    """Merge the results into the folder's heretic.json and write its model card again; returns the card."""
    from heretic_tui.core.shipping.metadata import read_metadata, write_metadata
    from heretic_tui.core.shipping.model_card import MODEL_CARD_FILE, model_card_for_folder

    metadata = read_metadata(folder)
    previous = metadata.get(EVALUATION_KEY) if isinstance(metadata.get(EVALUATION_KEY), dict) else {}
    metadata[EVALUATION_KEY] = {
        **harness,
        ORIGINAL_KEY: _merge(previous.get(ORIGINAL_KEY) or {}, original) or None,
        MODEL_KEY: _merge(previous.get(MODEL_KEY) or {}, edited),
    }
    write_metadata(folder, metadata)
    card = Path(folder) / MODEL_CARD_FILE
    write_text_atomically(card, model_card_for_folder(Path(folder), metadata))
    return card
