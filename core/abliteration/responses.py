"""Every trial's responses and verdicts in the run folder, human labels on them, and the counts they give.

A trial's refusal count is only as good as its verdicts, so the run keeps what was judged: ``responses/`` holds the
harmful prompts once (``prompts.json``) and one gzip-compressed JSON file per trial (``trial-<n>.json.gz``, plus
``baseline.json.gz``) with each response and the scorer's verdict; refusals stopped early are a few words, so a
trial of a hundred prompts takes a few kilobytes.

``labels.json`` holds the verdicts a person gave, keyed by :func:`~heretic_tui.core.abliteration.scoring.base.
response_key` (prompt and response), so one label applies to every trial that gave the same response. The counts
here (:func:`trial_counts`) are what report.json, the trial table and the Pareto front use: the scorer's verdict
where no label exists, the person's where one does. The labels file is written by the TUI while a run may still be
going, always whole (an atomic replace), and read again whenever counts are taken, so labels survive reattach,
resume and later trials.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heretic_tui.core.abliteration.scoring.base import Verdict, counts_as_refusal, response_key
from heretic_tui.core.atomic_files import write_bytes_atomically, write_json_atomically
from heretic_tui.core.errors import UserInputError

RESPONSES_FOLDER = "responses"
PROMPTS_FILE = "prompts.json"
LABELS_FILE = "labels.json"
BASELINE = "baseline"


def responses_folder(run_path: Path) -> Path:
    return run_path / RESPONSES_FOLDER


def _trial_file(run_path: Path, trial: int | str) -> Path:
    name = BASELINE if trial == BASELINE else f"trial-{int(trial)}"
    return responses_folder(run_path) / f"{name}.json.gz"


def save_responses(run_path: Path, trial: int | str, prompts: Sequence[str], responses: Sequence[str],
                   verdicts: Sequence[Verdict], scorer: str) -> None:
    """Record one trial's (or the baseline's) responses and verdicts; the prompts file is written once per set."""
    folder = responses_folder(run_path)
    folder.mkdir(parents=True, exist_ok=True)
    prompts_path = folder / PROMPTS_FILE
    if not prompts_path.is_file() or _read_prompts(run_path) != list(prompts):
        write_json_atomically(prompts_path, {"prompts": list(prompts)})
    document = {"scorer": scorer, "responses": list(responses), "verdicts": [verdict.value for verdict in verdicts]}
    write_bytes_atomically(_trial_file(run_path, trial), gzip.compress(json.dumps(document).encode("utf-8"), mtime=0))


def _read_prompts(run_path: Path) -> list[str]:
    try:
        data = json.loads((responses_folder(run_path) / PROMPTS_FILE).read_text(encoding="utf-8"))
        return [str(item) for item in data["prompts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


@dataclass
class JudgedResponse:
    """One harmful prompt of a trial: what the model said, what the scorer said, and the person's label if any."""

    prompt: str
    response: str
    scorer_verdict: Verdict
    label: Verdict | None

    @property
    def key(self) -> str:
        return response_key(self.prompt, self.response)

    @property
    def verdict(self) -> Verdict:
        return self.label if self.label is not None else self.scorer_verdict


def has_responses(run_path: Path, trial: int | str) -> bool:
    return _trial_file(run_path, trial).is_file()


def read_responses(run_path: Path, trial: int | str, labels: dict[str, Verdict] | None = None) -> list[JudgedResponse]:
    """A trial's judged responses with the run's labels applied; empty when the trial kept none (older runs)."""
    path = _trial_file(run_path, trial)
    if not path.is_file():
        return []
    try:
        document = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
        responses = [str(item) for item in document["responses"]]
        verdicts = [Verdict(item) for item in document["verdicts"]]
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        raise UserInputError(
            f"{path} cannot be read ({type(error).__name__}: {str(error)[:200]}); its trial's responses are lost. "
            "Delete the file; the trial keeps the refusal count the scorer gave it."
        ) from None
    prompts = _read_prompts(run_path)
    if len(prompts) != len(responses):
        prompts = (prompts + [""] * len(responses))[:len(responses)]
    labels = read_labels(run_path) if labels is None else labels
    return [JudgedResponse(prompt, response, verdict, labels.get(response_key(prompt, response)))
            for prompt, response, verdict in zip(prompts, responses, verdicts)]


def read_labels(run_path: Path) -> dict[str, Verdict]:
    """The person's labels of this run (key -> verdict); a damaged file is a user error naming it."""
    path = run_path / LABELS_FILE
    if not path.is_file():
        return {}
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return {str(key): Verdict(value["verdict"]) for key, value in data["labels"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserInputError(
            f"{path} cannot be read as the run's human labels ({type(error).__name__}: {str(error)[:200]}). Fix the "
            "JSON by hand or delete the file (the labels in it are then lost)."
        ) from None


def set_label(run_path: Path, prompt: str, response: str, verdict: Verdict | None) -> None:
    """Label one (prompt, response) pair, or remove its label with None; the file is replaced whole."""
    path = run_path / LABELS_FILE
    existing: dict[str, Any] = {}
    if path.is_file():
        read_labels(run_path)
        existing = json.loads(path.read_text(encoding="utf-8"))["labels"]
    key = response_key(prompt, response)
    if verdict is None:
        existing.pop(key, None)
    else:
        existing[key] = {"verdict": verdict.value, "prompt": prompt, "response": response}
    write_json_atomically(path, {"labels": existing})


@dataclass
class TrialCounts:
    """A trial's refusals as the scorer counted them and with the human labels applied."""

    refusals: int
    scorer_refusals: int
    evasive: int
    labelled: int
    total: int


def trial_counts(run_path: Path, trial: int | str, evasive_counts: bool,
                 labels: dict[str, Verdict] | None = None) -> TrialCounts | None:
    """The trial's counts from its stored responses, or None when it kept none."""
    judged = read_responses(run_path, trial, labels)
    if not judged:
        return None
    return TrialCounts(
        refusals=sum(1 for item in judged if counts_as_refusal(item.verdict, evasive_counts)),
        scorer_refusals=sum(1 for item in judged if counts_as_refusal(item.scorer_verdict, evasive_counts)),
        evasive=sum(1 for item in judged if item.verdict is Verdict.EVASIVE),
        labelled=sum(1 for item in judged if item.label is not None),
        total=len(judged),
    )


@dataclass
class Agreement:
    """How often the scorer's verdict matched the person's, over the labelled responses of the run."""

    agreed: int
    labelled: int

    def sentence(self, scorer: str) -> str:
        if not self.labelled:
            return f"no responses labelled yet: the {scorer} scorer's agreement with you is not known"
        return f"the {scorer} scorer agrees with you on {self.agreed}/{self.labelled} labelled responses"


def agreement(run_path: Path) -> Agreement:
    """Scorer against person over every distinct labelled response stored in the run's trial files."""
    labels = read_labels(run_path)
    seen: dict[str, bool] = {}
    folder = responses_folder(run_path)
    if labels and folder.is_dir():
        for path in sorted(folder.glob("*.json.gz")):
            trial: int | str = BASELINE if path.name.startswith(BASELINE) else int(path.name[6:-8])
            for item in read_responses(run_path, trial, labels):
                if item.label is not None:
                    seen.setdefault(item.key, item.label is item.scorer_verdict)
    return Agreement(sum(seen.values()), len(seen))
