"""Every run folder with its status and results: open its dashboard, resume it, or delete it.

A damaged run (a file of it cannot be read) is listed with the sentence that names the file; it can still be opened
and deleted, and the other runs are unaffected. The list refreshes by itself while a run in it is live.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Static

from heretic_tui.core.api import (
    JOB_KINDS,
    STATUS_DAMAGED,
    STATUS_MISSING,
    STATUS_RUNNING,
    RunDirectory,
    delete_run,
    runs_root,
)
from heretic_tui.core.errors import HereticError
from heretic_tui.tui.formatting import escape_markup, format_kl, format_refusals, format_timestamp, status_markup
from heretic_tui.tui.run_summaries import RunSummary, keep_refreshing, missing_runs, summarize_runs
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.screens.dialogs import ConfirmDialog
from heretic_tui.tui.widgets.runs_table import RunsTable


class RunsScreen(HereticScreen[None]):
    """All runs under the runs folder, newest first; the detail pane shows the highlighted one."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("o", "open", "Open"),
        Binding("r", "resume", "Resume"),
        Binding("x,delete", "delete", "Delete"),
        Binding("g", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summaries: dict[str, RunSummary] = {}
        self._live_refresh: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs"):
            yield RunsTable(id="runs-table")
            yield Static("", id="run-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "runs"
        self.query_one("#runs-table").border_title = "Runs"
        self.query_one("#run-detail").border_title = "Details"

    def on_screen_resume(self) -> None:
        """Read the runs whenever the screen is shown: when it is first pushed, and when a screen above it closes."""
        self.action_refresh()

    def action_refresh(self) -> None:
        self._load(runs_root(self.heretic.settings))

    def _refresh_if_shown(self) -> None:
        if self.is_current:
            self.action_refresh()

    @work(thread=True, group="runs", exclusive=True, exit_on_error=False)
    def _load(self, root: Path) -> None:
        summaries = summarize_runs(root)
        try:
            records = self.heretic.registry().list_runs()
        except Exception:
            records = []
        summaries += missing_runs(records, {summary.path for summary in summaries})
        self.app.call_from_thread(self._show, summaries, root)

    def _show(self, summaries: list[RunSummary], root: Path) -> None:
        table = self.query_one("#runs-table", RunsTable)
        self.summaries = {str(summary.path): summary for summary in summaries}
        table.show(summaries)
        table.border_subtitle = f"{len(summaries)} in {root}"
        if summaries:
            self._show_detail(self.selected)
        else:
            self.query_one("#run-detail", Static).update(
                f"No runs in {escape_markup(str(root))} yet.\nStart one from the home screen (n)."
            )
        self.refresh_bindings()
        self._live_refresh = keep_refreshing(self, self._live_refresh, any(summary.is_live for summary in summaries),
                                             self._refresh_if_shown)

    @property
    def selected(self) -> RunSummary | None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.summaries.get(key or "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(self.summaries.get(event.row_key.value or ""))
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def _show_detail(self, summary: RunSummary | None) -> None:
        detail = self.query_one("#run-detail", Static)
        if summary is None:
            detail.update("")
            return
        lines = [
            f"[b]{escape_markup(summary.name)}[/b]",
            status_markup(summary.status),
            "",
            f"Model    {escape_markup(summary.model)}",
            f"Kind     {summary.kind}",
            f"Started  {format_timestamp(summary.created)}",
            f"Trials   {summary.trials_done}/{summary.trial_target or '?'}",
        ]
        if summary.baseline_refusals is not None:
            lines.append(f"Baseline {format_refusals(summary.baseline_refusals, summary.baseline_total)} refusals")
        if summary.best is not None:
            best = summary.best
            lines.append(
                f"Best     #{best.number}: {format_refusals(best.refusals, best.refusal_total)} refusals, "
                f"KL {format_kl(best.kl)}"
            )
        if summary.error_message:
            label = "Damaged: " if summary.status == STATUS_DAMAGED else ""
            lines += ["", f"[$error]{label}{escape_markup(summary.error_message[:400])}[/]"]
        lines += ["", f"[$text-muted]{escape_markup(str(summary.path))}[/]"]
        detail.update("\n".join(lines))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        summary = self.selected if self.is_mounted else None
        if summary is not None and summary.status == STATUS_MISSING and action in ("open", "resume", "delete"):
            return False
        if action in ("open",):
            return summary is not None
        if action == "resume":
            kind = JOB_KINDS.get(summary.kind) if summary is not None else None
            return summary is not None and kind is not None and kind.resumable and summary.status != STATUS_RUNNING
        if action == "delete":
            return summary is not None and summary.status != STATUS_RUNNING
        return True

    def action_open(self) -> None:
        if self.selected is not None:
            self.heretic.open_dashboard(self.selected.path)

    def action_resume(self) -> None:
        if self.selected is not None:
            self.heretic.resume_run(self.selected.path)

    def action_delete(self) -> None:
        summary = self.selected
        if summary is None or summary.status == STATUS_RUNNING:
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._delete(summary.path)

        self.app.push_screen(
            ConfirmDialog(
                "Delete this run?",
                f"{summary.path}\n\nThe folder is removed with its journal, study, report and any exports inside "
                "it. This cannot be undone.",
                confirm_label="Delete",
                danger=True,
            ),
            answered,
        )

    @work(thread=True, group="runs-delete", exit_on_error=False)
    def _delete(self, path: Path) -> None:
        """The core deletes the folder and forgets it in the registry (the app's own registry)."""
        try:
            delete_run(RunDirectory(path), self.heretic.registry())
        except HereticError as error:
            self.app.call_from_thread(self.heretic.show_error, "The run was not deleted", str(error))
            return
        self.app.call_from_thread(self.notify, f"Deleted {path.name}")
        self.app.call_from_thread(self.action_refresh)

    def action_back(self) -> None:
        self.dismiss()
