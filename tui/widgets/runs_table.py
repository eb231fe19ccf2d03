"""The table of runs the home screen and the runs screen both show: status, what ran on which model, trials,
the best trial (or, for a damaged run, what is damaged) and when it started, one row per run keyed by its folder.

One widget, so both lists say the same thing the same way; the cursor stays on its row when the list is read again.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from heretic_tui.core.api import STATUS_DAMAGED
from heretic_tui.tui.formatting import (
    escape_markup,
    format_kl,
    format_refusals,
    format_timestamp,
    short_model_name,
    status_text,
    truncate,
)
from heretic_tui.tui.run_summaries import RunSummary
from heretic_tui.tui.widgets.table_rows import refill

PROBLEM_CHARACTERS = 40


def run_label(summary: RunSummary) -> str:
    """The model, and the job kind unless it is an abliteration (the common case reads shortest)."""
    model = short_model_name(summary.model)
    return model if summary.kind == "abliterate" else f"{summary.kind}: {model}"


def best_cell(summary: RunSummary) -> str:
    best = summary.best
    if best is not None:
        return f"{format_refusals(best.refusals, best.refusal_total)} KL {format_kl(best.kl)}"
    if summary.status == STATUS_DAMAGED:
        return truncate(summary.error_message, PROBLEM_CHARACTERS)
    return "–"


class RunsTable(DataTable[Any]):
    """Call :meth:`show` with the summaries, newest first."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for key, label in (("status", "Status"), ("model", "Model"), ("trials", "Trials"), ("best", "Best"),
                           ("started", "Started")):
            self.add_column(label, key=key)

    def show(self, summaries: list[RunSummary]) -> None:
        cursor = self.cursor_row
        refill(self, [(str(summary.path), (
            status_text(summary.status, self.app.theme_variables),
            escape_markup(run_label(summary)),
            f"{summary.trials_done}/{summary.trial_target}" if summary.trial_target else "–",
            best_cell(summary),
            format_timestamp(summary.created, compact=True),
        )) for summary in summaries])
        if summaries:
            self.move_cursor(row=min(cursor, len(summaries) - 1), animate=False)
