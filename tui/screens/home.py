"""The first screen: what can be done (actions) and what has been done (recent runs with their status).

The recent runs refresh by themselves while any of them is running, so a run started from another terminal, or
one that ends while the person reads the list, shows its progress and its ending without a key press.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from heretic_tui.core.api import ChatModel, runs_root
from heretic_tui.tui.formatting import escape_markup
from heretic_tui.tui.run_summaries import RunSummary, keep_refreshing, summarize_runs
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.widgets.runs_table import RunsTable

RECENT_RUNS = 30

ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("new_run", "n", "New abliteration run"),
    ("models", "b", "Browse local models"),
    ("runs", "r", "All runs"),
    ("chat", "c", "Chat with a model"),
    ("finetune", "f", "Fine-tune a model"),
    ("upload", "u", "Upload a model folder"),
    ("quit", "q", "Quit"),
)


class HomeScreen(HereticScreen[None]):
    """Actions on the left, recent runs on the right; Enter on an action runs it, Enter on a run opens it."""

    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("b", "models", "Models"),
        Binding("r", "runs", "Runs"),
        Binding("c", "chat", "Chat"),
        Binding("f", "finetune", "Fine-tune"),
        Binding("u", "upload", "Upload"),
        Binding("g", "refresh_runs", "Refresh", show=False),
        Binding("d", "doctor", "Doctor", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._live_refresh: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="home"):
            with Vertical(id="home-actions"):
                yield OptionList(
                    *[Option(f"[b]{key}[/b]  {label}", id=action) for action, key, label in ACTIONS],
                    id="actions",
                )
                yield Static("", id="home-hint")
            with Vertical(id="home-runs"):
                yield RunsTable(id="recent-runs")
                yield Static("", id="runs-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#actions").border_title = "Actions"
        self.query_one("#home-runs").border_title = "Recent runs"
        self.query_one("#home-hint", Static).update(
            "[$text-muted]Runs keep going when you quit or lose the connection; open one again here.[/]"
        )

    def on_screen_resume(self) -> None:
        """Read the runs whenever the screen is shown: when it is first pushed, and when a screen above it closes."""
        self.refresh_runs()

    def refresh_runs(self) -> None:
        self._load_runs(runs_root(self.heretic.settings))

    def _refresh_if_shown(self) -> None:
        if self.is_current:
            self.refresh_runs()

    def action_refresh_runs(self) -> None:
        self.refresh_runs()

    @work(thread=True, group="home-runs", exclusive=True, exit_on_error=False)
    def _load_runs(self, root: Path) -> None:
        summaries = summarize_runs(root, RECENT_RUNS)
        self.app.call_from_thread(self._show_runs, summaries, root)

    def _show_runs(self, summaries: list[RunSummary], root: Path) -> None:
        table = self.query_one("#recent-runs", RunsTable)
        table.show(summaries)
        empty = self.query_one("#runs-empty", Static)
        empty.display = not summaries
        table.display = bool(summaries)
        empty.update(
            f"No runs yet in {escape_markup(str(root))}.\nPress [b]n[/b] to start one (the built-in demo model "
            "needs no download)."
        )
        self._live_refresh = keep_refreshing(self, self._live_refresh, any(summary.is_live for summary in summaries),
                                             self._refresh_if_shown)

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter (or a click) on an action runs it, like its key."""
        event.stop()
        if event.option.id:
            await self.run_action(event.option.id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.heretic.open_dashboard(Path(event.row_key.value))

    def action_new_run(self) -> None:
        self.heretic.open_wizard()

    def action_models(self) -> None:
        self.heretic.open_model_browser()

    def action_runs(self) -> None:
        self.heretic.open_runs()

    def action_chat(self) -> None:
        self.heretic.open_chat(ChatModel.plain(self.heretic.settings.model))

    def action_finetune(self) -> None:
        self.heretic.open_finetune_wizard()

    def action_upload(self) -> None:
        self.heretic.open_upload()

    def action_doctor(self) -> None:
        self.heretic.open_doctor()

    async def action_quit(self) -> None:
        await self.heretic.action_quit()
