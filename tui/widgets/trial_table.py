"""The sortable table of trials: number, refusals, KL, the parameters that matter most, and time.

Rows are rebuilt from the run state on each update (a study has hundreds of trials, not millions), sorted in
Python on the real numbers rather than on the formatted cells. The cursor starts on the best trial (the chosen one
once the run has finished) and follows it while the study finds better ones, until the person moves it; from then
on it stays on the trial they picked. A study several workers share gets a Worker column once a trial names its
worker, and a study with the capability objective a Capability column (multiple-choice accuracy) once a trial has
a score, so other runs keep the table they always had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from heretic_tui.tui.formatting import format_duration, format_kl, format_refusals
from heretic_tui.tui.run_state import TrialRow
from heretic_tui.tui.widgets.table_rows import refill

SORT_KEYS: dict[str, Callable[[TrialRow], Any]] = {
    "number": lambda row: row.number,
    "refusals": lambda row: (row.refusals if row.refusals is not None else 10**9, row.kl or 0.0),
    "kl": lambda row: (row.kl if row.kl is not None else float("inf"), row.refusals or 0),
    "seconds": lambda row: row.seconds if row.seconds is not None else float("inf"),
    "worker": lambda row: (row.worker, row.number),
    "capability": lambda row: (row.capability if row.capability is not None else -1.0, row.number),
}
SORT_ORDER = ("number", "refusals", "kl", "seconds")
"""What ``s`` cycles through (and the worker, while the Worker column is shown)."""
NAVIGATION_KEYS = {"up", "down", "pageup", "pagedown", "home", "end", "ctrl+home", "ctrl+end"}
COLUMNS: tuple[tuple[str, str], ...] = (
    ("number", "#"),
    ("refusals", "Refusals"),
    ("kl", "KL"),
    ("scope", "Scope"),
    ("direction", "Dir"),
    ("attention", "Attn w"),
    ("mlp", "MLP w"),
    ("seconds", "Time"),
)
WORKER_COLUMN = ("worker", "Worker")
CAPABILITY_COLUMN = ("capability", "Capability")


def _parameter(row: TrialRow, name: str) -> str:
    value = row.params.get(name)
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


class TrialTable(DataTable[Any]):
    """Finished (and running) trials; Pareto trials are marked ◆, the best one ★."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.sort_key = "number"
        self.descending = False
        self._rows: list[TrialRow] = []
        self._front: set[int] = set()
        self._best: int | None = None
        self.cursor_follows_best = True

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show(self, rows: list[TrialRow], front: set[int], best: int | None) -> None:
        self._rows, self._front, self._best = rows, front, best
        if not self.shows_workers and any(row.worker for row in rows):
            self.add_column(WORKER_COLUMN[1], key=WORKER_COLUMN[0])
        if not self.shows_capability and any(row.capability is not None for row in rows):
            self.add_column(CAPABILITY_COLUMN[1], key=CAPABILITY_COLUMN[0])
        self._rebuild()

    @property
    def shows_workers(self) -> bool:
        return WORKER_COLUMN[0] in self.columns

    @property
    def shows_capability(self) -> bool:
        return CAPABILITY_COLUMN[0] in self.columns

    def cycle_sort(self) -> str:
        """Next sort column (number, refusals, KL, time, worker); returns its name for a notification."""
        order = (SORT_ORDER + ((WORKER_COLUMN[0],) if self.shows_workers else ())
                 + ((CAPABILITY_COLUMN[0],) if self.shows_capability else ()))
        self.sort_key = order[(order.index(self.sort_key) + 1) % len(order)] if self.sort_key in order else order[0]
        self.descending = False
        self._rebuild()
        return self.sort_key

    def sort_by(self, key: str) -> None:
        """Sort by a column (clicking its header); the same column again flips the order."""
        if key not in SORT_KEYS:
            return
        self.descending = not self.descending if key == self.sort_key else False
        self.sort_key = key
        self._rebuild()

    def on_key(self, event: events.Key) -> None:
        if event.key in NAVIGATION_KEYS:
            self.cursor_follows_best = False

    def on_click(self, event: events.Click) -> None:
        self.cursor_follows_best = False

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    @property
    def selected_trial(self) -> int | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key.value is not None else None

    def _rebuild(self) -> None:
        selected = self._best if self.cursor_follows_best and self._best is not None else self.selected_trial
        ordered = sorted(self._rows, key=SORT_KEYS[self.sort_key], reverse=self.descending)
        refill(self, [(str(row.number), self._cells(row)) for row in ordered])
        if selected is not None:
            for index, row in enumerate(ordered):
                if row.number == selected:
                    self.move_cursor(row=index, animate=False, scroll=self.cursor_follows_best)
                    break
        arrow = "▼" if self.descending else "▲"
        self.border_subtitle = f"sorted by {dict((*COLUMNS, WORKER_COLUMN, CAPABILITY_COLUMN))[self.sort_key]} {arrow}"

    def _cells(self, row: TrialRow) -> list[Any]:
        if row.number == self._best:
            mark, style = "★", "bold green"
        elif row.number in self._front:
            mark, style = "◆", "bold yellow"
        else:
            mark, style = " ", ""
        number = Text(f"{mark}{row.number}", style=style, justify="right")
        optional = {WORKER_COLUMN[0]: row.worker or "–", CAPABILITY_COLUMN[0]: self._capability(row)}
        extra = [optional[key.value] for key in self.columns if key.value in optional]
        if not row.finished:
            return [number, Text("running…", style="italic"), "", *self._parameters(row), "", *extra]
        return [
            number,
            Text(format_refusals(row.refusals, row.refusal_total), justify="right"),
            Text(format_kl(row.kl), justify="right"),
            *self._parameters(row),
            Text(format_duration(row.seconds), justify="right"),
            *extra,
        ]

    @staticmethod
    def _capability(row: TrialRow) -> Text:
        return Text("–" if row.capability is None else f"{row.capability:.0%}", justify="right")

    @staticmethod
    def _parameters(row: TrialRow) -> list[str]:
        scope = _parameter(row, "direction_scope")
        return [
            scope.replace("per_layer", "layer"),
            _parameter(row, "direction_index"),
            _parameter(row, "attention.max_weight"),
            _parameter(row, "mlp.max_weight"),
        ]
