"""Starting a server from the app: the models by name, the address and port; then the server's dashboard.

The server is the same detached job as ``heretic-tui serve``: its dashboard shows the URL once it listens, and
cancelling it there (c) stops it. Binding beyond loopback needs the API key setting (HERETIC_SERVE_API_KEY), which
the core checks before anything starts.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Label, Static

from heretic_tui.core.api import JobHandle, start_serve
from heretic_tui.tui.formatting import escape_markup
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.screens.dialogs import MessageDialog


class ServeScreen(HereticScreen[None]):
    DEFAULT_CSS = """
    ServeScreen #serve-address, ServeScreen #serve-address > Vertical { height: auto; }
    ServeScreen #serve-status { margin-top: 1; }
    """

    BINDINGS = [
        Binding("ctrl+r", "start", "Start server", priority=True),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, models: str = "") -> None:
        super().__init__()
        self.models = models
        self.starting = False

    def compose(self) -> ComposeResult:
        settings = self.heretic.settings
        yield Header()
        with Vertical(id="serve"):
            yield Label("Models, as NAME=MODEL separated by spaces (MODEL: a folder, hub id, 'demo' or RUN_DIR#TRIAL)")
            yield Input(self.models or f"base={settings.model.model}", id="serve-models")
            with Horizontal(id="serve-address"):
                with Vertical():
                    yield Label("Address")
                    yield Input(settings.serve.serve_host, id="serve-host")
                with Vertical():
                    yield Label("Port (0: any free one)")
                    yield Input(str(settings.serve.serve_port), id="serve-port")
            yield Static("Press ctrl+r to start the server (a detached job: it keeps running after the app quits; "
                         "cancel it on its dashboard).", id="serve-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "serve"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not self.starting if action == "start" else True

    def action_start(self) -> None:
        port_text = self.query_one("#serve-port", Input).value.strip()
        if not port_text.isdigit():
            self.notify("The port must be a whole number (0 picks a free one).", severity="error")
            return
        models = self.query_one("#serve-models", Input).value.split()
        host = self.query_one("#serve-host", Input).value.strip()
        self.starting = True
        self.refresh_bindings()
        self.query_one("#serve-status", Static).update("Checking the models and the address…")
        self._start(models, host, int(port_text))

    @work(thread=True, group="serve-start", exclusive=True, exit_on_error=False)
    def _start(self, models: list[str], host: str, port: int) -> None:
        self.start_from_thread(lambda: start_serve(models, self.heretic.settings, host=host, port=port),
                               self._started, self._failed)

    def _failed(self, message: str) -> None:
        self.starting = False
        self.refresh_bindings()
        self.query_one("#serve-status", Static).update(f"[$error]{escape_markup(message)}[/]")
        self.app.push_screen(MessageDialog("The server did not start", message))

    def _started(self, handle: JobHandle) -> None:
        self.heretic.remember_followed_run(handle.run.path)
        self.app.pop_screen()
        self.heretic.open_dashboard(handle.run.path, handle)
