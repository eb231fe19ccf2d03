"""The dashboard of a job without trials or steps (an export, a comparison, an upload): its phases, the figures it
measured, with what each figure is, the file an upload is sending, and what the job wrote.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from heretic_tui.tui.formatting import describe_figures, escape_markup, format_bytes
from heretic_tui.tui.run_state import RunState
from heretic_tui.tui.screens.dashboard import DashboardScreen


def results_markup(state: RunState) -> str:
    """One line per reported set of figures (rounded, each with its meaning), then the files the job wrote."""
    lines = []
    transfer = state.transfer
    if transfer is not None and state.is_running:
        lines.append(f"Sending {escape_markup(transfer.path)}: {format_bytes(transfer.done)} of "
                     f"{format_bytes(transfer.size)} · the upload {format_bytes(transfer.total_done)} of "
                     f"{format_bytes(transfer.total)}")
    for name, values in state.metrics.items():
        lines.append(f"[b]{escape_markup(name)}[/b]  {escape_markup(describe_figures(name, values))}")
    for name, path in state.artifacts.items():
        lines.append(f"[$success]✔[/] {escape_markup(name)}: {escape_markup(path)}")
    if not lines:
        return "[$text-muted]Results appear here when the job writes them.[/]"
    return "\n".join(lines)


class JobDashboard(DashboardScreen):
    """Phases, results and the worker log of a job that neither searches nor trains."""

    VIEW_CLASS = "-job"

    def compose_main(self) -> ComposeResult:
        yield Static("", id="job-results")

    def title_panels(self) -> None:
        self.query_one("#job-results").border_title = "Results"

    def redraw_view(self, now: float) -> None:
        self.query_one("#job-results", Static).update(results_markup(self.state))
