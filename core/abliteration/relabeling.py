"""Refusal counts with the human labels applied, and report.json kept in step with them.

The study's journal keeps the scorer's counts (they are what the search optimised and must not change under it);
everything a person reads (report.json, the trial table, the Pareto front, the chosen trial, an export's metadata)
uses the counts with labels, which :func:`apply_labels` computes from the stored responses. :func:`relabel_report`
rewrites the report of a run after a label changes, with the run's own choice rule, so the chosen trial moves when
the labels move it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heretic_tui.core.abliteration.responses import (
    BASELINE,
    TrialCounts,
    agreement,
    read_labels,
    trial_counts,
)
from heretic_tui.core.abliteration.study import TrialResult, choose_trial, pareto_front
from heretic_tui.core.atomic_files import read_json_object, write_json_atomically

SCORING_KEY = "scoring"


def apply_labels(run_path: Path, results: Sequence[TrialResult],
                 evasive_counts: bool) -> tuple[list[TrialResult], dict[int, TrialCounts]]:
    """The results with each trial's refusals recounted from its stored responses and the run's labels."""
    labels = read_labels(run_path)
    counted: dict[int, TrialCounts] = {}
    relabelled = []
    for result in results:
        counts = trial_counts(run_path, result.number, evasive_counts, labels)
        if counts is None:
            relabelled.append(result)
            continue
        counted[result.number] = counts
        relabelled.append(dataclasses.replace(result, refusals=counts.refusals))
    return relabelled, counted


def scoring_section(run_path: Path, scorer: str, evasive_counts: bool, choice_max_kl: float,
                    counted: dict[int, TrialCounts]) -> dict[str, Any]:
    """What report.json says about how refusals were counted."""
    run_agreement = agreement(run_path)
    baseline = trial_counts(run_path, BASELINE, evasive_counts)
    return {
        "scorer": scorer,
        "evasive_counts_as_refusal": evasive_counts,
        "choice_max_kl": choice_max_kl,
        "human_labels": len(read_labels(run_path)),
        "trials_with_human_labels": sorted(number for number, counts in counted.items() if counts.labelled),
        "baseline_labelled": baseline.labelled if baseline else 0,
        "agreement": {"agreed": run_agreement.agreed, "labelled": run_agreement.labelled,
                      "sentence": run_agreement.sentence(scorer)},
    }


def trial_entry_counts(counts: TrialCounts | None) -> dict[str, Any]:
    """The per-trial fields report.json adds to a trial's entry (nothing for a trial without stored responses)."""
    if counts is None:
        return {}
    return {"scorer_refusals": counts.scorer_refusals, "evasive": counts.evasive, "human_labels": counts.labelled}


def relabel_report(run_path: Path) -> dict[str, Any] | None:
    """Recount report.json's trials and baseline with the current labels; returns the new report (None: no report).

    A run whose report predates stored responses keeps its counts (its trials have nothing to recount).
    """
    report_path = run_path / "report.json"
    if not report_path.is_file():
        return None
    report = read_json_object(report_path)
    scoring = report.get(SCORING_KEY)
    if not isinstance(scoring, dict):
        return report
    evasive_counts = bool(scoring.get("evasive_counts_as_refusal", True))
    results = [
        TrialResult(number=int(item["number"]), refusals=int(item.get("scorer_refusals", item["refusals"])),
                    kl=float(item["kl"]), seconds=float(item.get("seconds", 0.0)),
                    apply_reset_seconds=float(item.get("apply_reset_seconds", 0.0)),
                    params=dict(item.get("params", {})),
                    capability=float(item["capability"]) if item.get("capability") is not None else None)
        for item in report.get("trials", [])
    ]
    relabelled, counted = apply_labels(run_path, results, evasive_counts)
    by_number = {result.number: result for result in relabelled}
    for item in report.get("trials", []):
        number = int(item["number"])
        item["refusals"] = by_number[number].refusals
        item.update(trial_entry_counts(counted.get(number)))
    baseline = trial_counts(run_path, BASELINE, evasive_counts)
    if baseline is not None and isinstance(report.get("baseline"), dict):
        report["baseline"]["refusals"] = baseline.refusals
    report["pareto"] = pareto_front(relabelled)
    chosen = choose_trial(relabelled, float(scoring.get("choice_max_kl", 0.1)))
    report["chosen_trial"] = chosen.number if chosen else None
    report[SCORING_KEY] = scoring_section(run_path, str(scoring.get("scorer", "markers")), evasive_counts,
                                          float(scoring.get("choice_max_kl", 0.1)), counted)
    write_json_atomically(report_path, report)
    return report
