"""The core's public surface for front ends: start, attach and list runs, job kinds, model browsing, chat, the
registry, export, compare and upload.

The terminal UI reaches the core only through this module, :mod:`heretic_tui.core.settings`,
:mod:`heretic_tui.core.errors` and :mod:`heretic_tui.core.runs.events` (an import-linter contract in pyproject.toml
holds it to that), so the core's packages can be reorganised without touching a screen, and everything a front end
may rely on is listed in one place.

Names that are cheap to import are re-exported as they are. The job starts that need torch or Optuna to check their
request (export, compare, upload, the search plan) are small functions that import their module when called: the home
screen must open in a fraction of a second, and a test that replaces the core's function (``monkeypatch`` on
``heretic_tui.core.shipping.export.start_export``) still reaches the replacement.
"""

from __future__ import annotations

from pathlib import Path

from heretic_tui.core.abliteration.prompts import DEMO_DEFAULTS, PUBLIC_DEFAULTS
from heretic_tui.core.abliteration.responses import (
    BASELINE,
    Agreement,
    JudgedResponse,
    TrialCounts,
    agreement,
    has_responses,
    read_labels,
    read_responses,
    set_label,
    trial_counts,
)
from heretic_tui.core.abliteration.scoring.base import Verdict
from heretic_tui.core.abliteration.search_plan import random_trial_count
from heretic_tui.core.abliteration.study_view import SharedStudyReader, StudySnapshot, StudyTrial, WorkerSpeed
from heretic_tui.core.atomic_files import read_json_object
from heretic_tui.core.finetuning.sources import HUB_PREFIX
from heretic_tui.core.models.browser import (
    ModelInfo,
    describe_model,
    find_models,
    model_setting_for,
)
from heretic_tui.core.models.chat import ChatError, ChatModel, ChatSession
from heretic_tui.core.models.references import KIND_DEMO, KIND_HUB, ModelReference, parse_model_reference
from heretic_tui.core.runs.handle import JobHandle, attach
from heretic_tui.core.runs.job_kinds import JOB_KINDS, JobKind, job_kind, start_job_of_kind
from heretic_tui.core.runs.journal import tail_lines
from heretic_tui.core.runs.lifecycle import delete_run
from heretic_tui.core.runs.registry import STATUS_MISSING, ModelRecord, Registry, RunRecord
from heretic_tui.core.runs.run_directory import (
    STATUS_CANCELLED,
    STATUS_DAMAGED,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_RUNNING,
    RunDirectory,
    list_runs,
    runs_root,
)
from heretic_tui.core.operations.doctor import Check
from heretic_tui.core.operations.plan import Plan
from heretic_tui.core.operations.trial_time import approximate_duration
from heretic_tui.core.settings import Settings
from heretic_tui.core.shipping.metadata import FORMAT_MERGED, METADATA_FILE, read_metadata
from heretic_tui.core.shipping.hub import (
    MODEL_CARD_FILE,
    STATE_SENDING,
    default_repo_name,
    hub_user_name,
    resolve_token,
    validate_model_folder,
    validate_repo_name,
)

__all__ = [
    "DEMO_DEFAULTS",
    "FORMAT_MERGED",
    "HUB_PREFIX",
    "JOB_KINDS",
    "KIND_DEMO",
    "KIND_HUB",
    "METADATA_FILE",
    "MODEL_CARD_FILE",
    "PUBLIC_DEFAULTS",
    "STATUS_CANCELLED",
    "STATUS_DAMAGED",
    "STATUS_FAILED",
    "STATUS_FINISHED",
    "STATUS_MISSING",
    "STATUS_RUNNING",
    "STATE_SENDING",
    "ChatError",
    "Check",
    "ChatModel",
    "ChatSession",
    "JobHandle",
    "JobKind",
    "ModelInfo",
    "ModelReference",
    "ModelRecord",
    "Plan",
    "Registry",
    "RunDirectory",
    "RunRecord",
    "SharedStudyReader",
    "StudySnapshot",
    "StudyTrial",
    "WorkerSpeed",
    "attach",
    "default_repo_name",
    "delete_run",
    "describe_model",
    "find_models",
    "hub_user_name",
    "job_kind",
    "list_runs",
    "model_setting_for",
    "parse_model_reference",
    "plan_lines",
    "plan_model",
    "resolve_token",
    "run_doctor",
    "runs_root",
    "start_compare",
    "start_export",
    "start_serve",
    "start_job_of_kind",
    "random_trial_count",
    "read_json_object",
    "read_metadata",
    "start_upload",
    "tail_lines",
    "validate_model_folder",
    "validate_repo_name",
    "BASELINE",
    "Agreement",
    "JudgedResponse",
    "TrialCounts",
    "Verdict",
    "agreement",
    "approximate_duration",
    "has_responses",
    "read_labels",
    "read_responses",
    "set_label",
    "trial_counts",
]


def start_export(run_dir: str | Path, trial: int, output: str | Path, *, adapter: bool = False) -> JobHandle:
    """Export one trial of an abliteration run (merged model, or a LoRA adapter) in a worker job of its own."""
    from heretic_tui.core.shipping import export

    return export.start_export(run_dir, trial, output, adapter=adapter)


def start_compare(
    models: list[str],
    prompts: str,
    settings: Settings,
    run_dir: str | Path | None = None,
    *,
    max_new_tokens: int,
    held_out: str | None = None,
) -> JobHandle:
    """Compare models (the first is the KL reference) on a prompt source in a worker job of its own."""
    from heretic_tui.core.shipping import compare

    return compare.start_compare(models, prompts, settings, run_dir, max_new_tokens=max_new_tokens,
                                 held_out=held_out)


def start_upload(
    folder: str | Path,
    repo: str,
    *,
    private: bool,
    token: str,
    endpoint: str | None = None,
    settings: Settings | None = None,
) -> JobHandle:
    """Upload a model folder to the Hub in a detached worker job (the token reaches it through a pipe only)."""
    from heretic_tui.core.shipping import upload_job

    return upload_job.start_upload(folder, repo, private=private, token=token, endpoint=endpoint,
                                   settings=settings)


def trial_responses(run_dir: str | Path, trial: int | str) -> list[JudgedResponse]:
    """A trial's (or ``BASELINE``'s) harmful prompts, responses, scorer verdicts and human labels."""
    return read_responses(Path(run_dir), trial)


def label_response(run_dir: str | Path, prompt: str, response: str, verdict: Verdict | None) -> None:
    """Store a person's verdict on one response (None removes it) and recount report.json with it, if written.

    The label applies to every trial of the run that gave the same response to the same prompt; a live run's
    worker reads the labels again whenever it writes its report.
    """
    from heretic_tui.core.abliteration.relabeling import relabel_report

    set_label(Path(run_dir), prompt, response, verdict)
    relabel_report(Path(run_dir))


def relabelled_counts(run_dir: str | Path, trials: list[int],
                      evasive_counts: bool | None = None) -> dict[int, TrialCounts]:
    """The refusal counts of the given trials with the run's human labels applied (trials without stored
    responses are left out); ``evasive_counts`` defaults to the run's own evasive_counts_as_refusal."""
    if evasive_counts is None:
        path = Path(run_dir) / "report.json"
        scoring = (read_json_object(path) if path.is_file() else {}).get("scoring")
        evasive_counts = bool(scoring.get("evasive_counts_as_refusal", True)) if isinstance(scoring, dict) else True
    labels = read_labels(Path(run_dir))
    counted = {number: trial_counts(Path(run_dir), number, evasive_counts, labels) for number in trials}
    return {number: counts for number, counts in counted.items() if counts is not None}


def scorer_agreement(run_dir: str | Path) -> Agreement:
    """How often the run's scorer agrees with the person's labels."""
    return agreement(Path(run_dir))


def plan_model(settings: Settings, *, gpus: list[tuple[str, int, int]] | None = None,
               host_available: int | None = None) -> Plan:
    """The plan before any download for ``settings.model.model``, on ``gpus`` (name, free and total bytes; none
    means CPU only): metadata only, no torch import, so a screen may call it from a thread while the person waits."""
    from heretic_tui.core.operations import plan

    facts = plan.read_model_facts(settings.model.model, settings)
    return plan.make_plan(facts, settings, [plan.Gpu(*gpu) for gpu in gpus or []], host_available=host_available)


def plan_lines(plan: Plan) -> list[str]:
    """The plan as the lines ``heretic-tui plan`` prints."""
    from heretic_tui.core.operations import plan as planning

    return planning.plan_lines(plan)


def run_scorer(run_dir: str | Path) -> str:
    """The refusal scorer a run's report.json names ('markers' for runs older than the scorer record)."""
    path = Path(run_dir) / "report.json"
    report = read_json_object(path) if path.is_file() else {}
    scoring = report.get("scoring")
    return str(scoring.get("scorer", "markers")) if isinstance(scoring, dict) else "markers"


def pareto_of(points: list[tuple[int, float, int]], capabilities: dict[int, float] | None = None) -> list[int]:
    """The Pareto front of (trial, KL, refusals) points, by the study's own definition; with every trial's
    capability score (a study with the capability objective) it is the front over all three."""
    from heretic_tui.core.abliteration.study import TrialResult, pareto_front

    scores = capabilities or {}
    return pareto_front([TrialResult(number, refusals, kl, 0.0, 0.0, {}, capability=scores.get(number))
                         for number, kl, refusals in points])


def chosen_trial(run_dir: str | Path) -> int | None:
    """The trial report.json chooses (after human labels, when there are any); None before the report exists."""
    path = Path(run_dir) / "report.json"
    chosen = (read_json_object(path) if path.is_file() else {}).get("chosen_trial")
    return chosen if isinstance(chosen, int) and not isinstance(chosen, bool) else None


def run_doctor(settings: Settings, *, columns: int, lines: int, color_system: str | None) -> list[Check]:
    """The doctor's checks for a terminal of this size and colour support, run in a child process (the app
    never imports torch or opens a CUDA context)."""
    from heretic_tui.core.operations.doctor import TerminalFacts, run_checks_apart

    return run_checks_apart(settings, TerminalFacts(True, columns, lines, color_system))


def start_serve(models: list[str], settings: Settings, run_dir: str | Path | None = None, *,
                host: str | None = None, port: int | None = None) -> JobHandle:
    """Serve models (``NAME=MODEL``) over an OpenAI-compatible API in a detached worker job of its own."""
    from heretic_tui.core.serving import job

    return job.start_serve(models, settings, run_dir, host=host, port=port)
