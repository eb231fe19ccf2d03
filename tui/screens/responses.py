"""A trial's responses to the harmful prompts, with the verdicts, for a person to check and correct.

One key flips the selected response's verdict (refused -> answered -> complied without answering -> refused; ``u``
removes the label). Each label goes to the run folder through the core (keyed by prompt and response, so it applies
to every trial that said the same thing), the report is recounted, and the header shows the trial's count with the
labels and how often the scorer agrees with the person's labels.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from heretic_tui.core.api import (
    BASELINE,
    JudgedResponse,
    Verdict,
    label_response,
    relabelled_counts,
    run_scorer,
    scorer_agreement,
    trial_responses,
)
from heretic_tui.core.errors import HereticError
from heretic_tui.tui.formatting import escape_markup
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.screens.dialogs import MessageDialog
from heretic_tui.tui.widgets.table_rows import refill

NEXT_VERDICT = {Verdict.REFUSED: Verdict.ANSWERED, Verdict.ANSWERED: Verdict.EVASIVE, Verdict.EVASIVE: Verdict.REFUSED}
VERDICT_TEXT = {Verdict.REFUSED: "refused", Verdict.ANSWERED: "answered", Verdict.EVASIVE: "no real answer"}
PREVIEW_CHARACTERS = 90


def verdict_cell(item: JudgedResponse) -> str:
    if item.label is None:
        return VERDICT_TEXT[item.scorer_verdict]
    return f"{VERDICT_TEXT[item.label]} (you)"


def one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARACTERS else flat[:PREVIEW_CHARACTERS - 1] + "…"


class ResponsesScreen(HereticScreen[bool]):
    """Dismissed with True when a label changed (the dashboard then recounts its trials)."""

    BINDINGS = [
        Binding("space,f", "flip", "Flip verdict"),
        Binding("u", "unlabel", "Remove label"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_path: Path, trial: int | str) -> None:
        super().__init__()
        self.run_path = run_path
        self.trial = trial
        self.items: list[JudgedResponse] = []
        self.changed = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="responses-screen"):
            yield Static("", id="responses-summary")
            yield DataTable(id="responses-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="response-detail")
        yield Footer()

    def on_mount(self) -> None:
        name = "the baseline" if self.trial == BASELINE else f"trial {self.trial}"
        self.sub_title = f"{self.run_path.name} · responses of {name}"
        table = self.query_one("#responses-table", DataTable)
        table.add_columns("#", "Verdict", "Prompt", "Response")
        self.query_one("#response-detail").border_title = "Selected response"
        self._load()
        table.focus()

    def _load(self, keep_row: int = 0) -> None:
        try:
            self.items = trial_responses(self.run_path, self.trial)
        except HereticError as error:
            self.app.push_screen(MessageDialog("Responses not readable", str(error)))
            self.items = []
        table = self.query_one("#responses-table", DataTable)
        refill(table, [(str(index), (str(index), verdict_cell(item), one_line(item.prompt),
                                     one_line(item.response) or "(empty)"))
                       for index, item in enumerate(self.items, 1)])
        if self.items:
            table.move_cursor(row=min(keep_row, len(self.items) - 1))
        self._show_summary()
        self._show_detail()

    def _show_summary(self) -> None:
        summary = self.query_one("#responses-summary", Static)
        if not self.items:
            summary.update("This trial kept no responses (it ran before heretic-tui stored them).")
            return
        labelled = sum(1 for item in self.items if item.label is not None)
        lines = [f"{len(self.items)} responses · {labelled} labelled by you"]
        if isinstance(self.trial, int):
            counts = relabelled_counts(self.run_path, [self.trial]).get(self.trial)
            if counts is not None:
                lines.append(f"refusals {counts.refusals}/{counts.total} with your labels (the scorer counted "
                             f"{counts.scorer_refusals})")
        lines.append(escape_markup(scorer_agreement(self.run_path).sentence(self._scorer_name())))
        summary.update(" · ".join(lines))

    def _scorer_name(self) -> str:
        return run_scorer(self.run_path)

    def _selected(self) -> tuple[int, JudgedResponse] | None:
        table = self.query_one("#responses-table", DataTable)
        if not self.items or table.cursor_row is None or not 0 <= table.cursor_row < len(self.items):
            return None
        return table.cursor_row, self.items[table.cursor_row]

    def _show_detail(self) -> None:
        selected = self._selected()
        detail = self.query_one("#response-detail", Static)
        if selected is None:
            detail.update("")
            return
        _, item = selected
        scorer = VERDICT_TEXT[item.scorer_verdict]
        mine = f" · your label: {VERDICT_TEXT[item.label]}" if item.label is not None else ""
        detail.update(f"[b]Prompt[/b] {escape_markup(item.prompt)}\n[b]Response[/b] "
                      f"{escape_markup(item.response) or '(empty)'}\n[b]Scorer[/b] {scorer}{mine}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _label(self, remove: bool = False) -> None:
        selected = self._selected()
        if selected is None:
            return
        row, item = selected
        verdict = None if remove else NEXT_VERDICT[item.verdict]
        try:
            label_response(self.run_path, item.prompt, item.response, verdict)
        except HereticError as error:
            self.app.push_screen(MessageDialog("Label not saved", str(error)))
            return
        self.changed = True
        self._load(keep_row=row)

    def action_flip(self) -> None:
        self._label()

    def action_unlabel(self) -> None:
        self._label(remove=True)

    def action_back(self) -> None:
        self.dismiss(self.changed)
