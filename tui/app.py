"""The heretic-tui application: screens, global keys, command palette, and the ``launch`` entry point.

The app holds the base settings (config file and environment, as the CLI would load them), a clock and a
resource probe; screens ask the app to navigate (``open_*``) so every route (home, palette, model browser,
``heretic-tui ./model``) lands on the same screen objects. Nothing here computes anything: jobs start through
``core`` and screens render their events.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from rich.text import Text
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from heretic_tui.core.api import (
    JOB_KINDS,
    ChatModel,
    JobHandle,
    ModelInfo,
    Registry,
    RunDirectory,
    start_job_of_kind,
)
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import Settings, load_settings
from heretic_tui.tui.resources import ResourceProbe
from heretic_tui.tui.screens.base import start_from_thread
from heretic_tui.tui.screens.dialogs import ConfirmDialog, MessageDialog
from heretic_tui.tui.terminal_alerts import terminal_alert

STYLES_PATH = Path(__file__).resolve().parent.parent / "styles" / "app.tcss"


class HereticApp(App[int]):
    """Keyboard-driven front end over core's jobs; safe to quit at any time (jobs run in their own processes)."""

    CSS_PATH = STYLES_PATH
    TITLE = "heretic-tui"
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Keys", show=False),
    ]

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        config_path: Path | None = None,
        model_path: str | None = None,
        attach_run: Path | None = None,
        start_settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        resource_probe: ResourceProbe | None = None,
        registry_path: Path | None = None,
        hub_endpoint: str | None = None,
    ) -> None:
        super().__init__()
        self.settings_error: str | None = None
        if settings is None:
            try:
                settings = load_settings()
            except UserInputError as error:
                self.settings_error = str(error)
                settings = Settings()
        self.settings = settings
        self.config_path = config_path
        self.model_path = model_path
        self.attach_run = attach_run
        self.start_settings = start_settings
        self.clock = clock
        self.resource_probe = resource_probe or ResourceProbe()
        self.registry_path = registry_path
        self.hub_endpoint = hub_endpoint
        self.starting_run = False
        self.followed_runs: list[Path] = []
        """Every run this session showed or started (dashboards, exports, comparisons, uploads), newest last."""
        self.terminal_write: Callable[[str], None] = self._write_to_terminal
        """Where terminal alerts go: the terminal itself; tests put a list's ``append`` here."""
        self._quit_asked = False

    def on_mount(self) -> None:
        from heretic_tui.tui.screens.home import HomeScreen

        self.push_screen(HomeScreen())
        if self.settings_error:
            self.show_error("Settings could not be loaded", self.settings_error + "\n\nThe defaults are used instead.")
        if self.attach_run is not None:
            self.open_dashboard(self.attach_run)
        elif self.start_settings is not None:
            self.start_abliteration_run(self.start_settings)
        elif self.model_path is not None:
            self.open_model_actions(Path(self.model_path))

    def open_dashboard(self, run_path: Path, handle: JobHandle | None = None) -> None:
        """The dashboard of the run's kind (from its job.json): a study, a fine-tuning run, or any other job."""
        from heretic_tui.tui.screens.abliteration_dashboard import AbliterationDashboard
        from heretic_tui.tui.screens.finetune_dashboard import FinetuneDashboard
        from heretic_tui.tui.screens.job_dashboard import JobDashboard

        run_path = Path(run_path)
        try:
            kind_name = str((handle.run if handle is not None else RunDirectory(run_path)).read_job().get("kind", ""))
        except (OSError, ValueError, AttributeError):
            kind_name = ""
        kind = JOB_KINDS.get(kind_name)
        screen = AbliterationDashboard if kind and kind.has_trials else FinetuneDashboard if kind and kind.has_steps \
            else JobDashboard
        self.push_screen(screen(run_path, handle, kind_name))

    def remember_followed_run(self, run_path: Path) -> None:
        """Note a run this session follows, so quitting can say which of them keep running."""
        run_path = Path(run_path)
        if run_path in self.followed_runs:
            self.followed_runs.remove(run_path)
        self.followed_runs.append(run_path)

    def live_followed_runs(self) -> list[Path]:
        """The followed runs whose worker is still running (they outlive the app)."""
        return [path for path in self.followed_runs if RunDirectory(path).worker_alive()]

    def alert_terminal(self, title: str, body: str) -> None:
        """Ring the bell and send a desktop notification (unless ``output.notify_terminal`` is off)."""
        if self.settings.output.notify_terminal:
            self.terminal_write(terminal_alert(title, body, inside_tmux=bool(os.environ.get("TMUX"))))

    def _write_to_terminal(self, text: str) -> None:
        """Raw output through Textual's driver, the way ``App.bell`` writes (Textual has no public raw write)."""
        if not self.is_headless and self._driver is not None:
            self._driver.write(text)

    def open_wizard(self, model: str | None = None) -> None:
        from heretic_tui.tui.screens.wizard import WizardScreen

        self.push_screen(WizardScreen(self.settings, model=model))

    def open_finetune_wizard(self, model: str | None = None) -> None:
        from heretic_tui.tui.screens.finetune_wizard import FinetuneWizardScreen

        self.push_screen(FinetuneWizardScreen(self.settings, model=model))

    def open_serve(self, models: str = "") -> None:
        from heretic_tui.tui.screens.serve import ServeScreen

        self.push_screen(ServeScreen(models))

    def open_doctor(self) -> None:
        from heretic_tui.tui.screens.doctor import DoctorScreen

        self.push_screen(DoctorScreen())

    def open_upload(self, folder: Path | None = None) -> None:
        from heretic_tui.tui.screens.upload import UploadScreen

        self.push_screen(UploadScreen(folder))

    def open_lineage(self, model_path: Path) -> None:
        from heretic_tui.tui.screens.lineage import LineageScreen

        self.push_screen(LineageScreen(Path(model_path)))

    def registry(self) -> Registry:
        """The run and model index (the app's own path in tests, the user data folder otherwise)."""
        return Registry(self.registry_path)

    def open_model_actions(self, folder: Path, model: ModelInfo | None = None) -> None:
        from heretic_tui.tui.screens.model_actions import ModelActionsScreen

        self.push_screen(ModelActionsScreen(Path(folder), model))

    def open_model_browser(self) -> None:
        from heretic_tui.tui.screens.model_browser import ModelBrowserScreen

        self.push_screen(ModelBrowserScreen())

    def open_runs(self) -> None:
        from heretic_tui.tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    def open_chat(self, model: ChatModel) -> None:
        from heretic_tui.tui.screens.chat import ChatScreen

        self.push_screen(ChatScreen(model, self.settings.prompts.system_prompt))

    def open_chat_with(self, model: str) -> None:
        """Chat with a model given as the ``model.model`` setting, loaded with the app's other model settings."""
        self.open_chat(ChatModel.plain(dataclasses.replace(self.settings.model, model=model)))

    def show_error(self, title: str, message: str, details: str = "") -> None:
        self.push_screen(MessageDialog(title, message, details=details))

    def start_abliteration_run(self, settings: Settings) -> None:
        """Check the settings and start an abliteration run in a thread (preflight reads tokenizers and prompts)."""
        self._start_run(settings, "abliterate")

    def start_finetune_run(self, settings: Settings) -> None:
        """Check the settings and start a fine-tuning run in a thread (preflight reads the model and the data)."""
        self._start_run(settings, "finetune")

    def _start_run(self, settings: Settings, kind: str) -> None:
        """A second request while one is being checked is refused, so an impatient key press never starts two runs."""
        if self.starting_run:
            self.notify("A run is already being started.", severity="warning")
            return
        self.starting_run = True
        self.run_worker(partial(self._start_in_thread, settings, kind), thread=True, group="start")

    def _start_in_thread(self, settings: Settings, kind: str) -> None:
        start_from_thread(self, lambda: start_job_of_kind(kind, settings), self._show_started_run, self._start_failed)

    def _start_failed(self, message: str) -> None:
        self.starting_run = False
        self.show_error("The run cannot start", message)

    def _show_started_run(self, handle: JobHandle) -> None:
        """The wizard that started the run has done its job; the dashboard takes its place."""
        from heretic_tui.tui.screens.wizard import WizardScreen

        self.starting_run = False
        if isinstance(self.screen, WizardScreen):
            self.pop_screen()
        self.open_dashboard(handle.run.path, handle)

    def resume_run(
        self,
        run_path: Path,
        trials: int | None = None,
        on_started: Callable[[JobHandle], None] | None = None,
    ) -> None:
        """Resume (or extend to ``trials``) a run with its own settings; the dashboard follows it.

        ``on_started`` receives the new handle (a dashboard already showing the run passes its own method);
        without it a dashboard is opened.
        """
        self.run_worker(partial(self._resume_run, Path(run_path), trials, on_started), thread=True, group="start",
                        exclusive=True)

    def _resume_run(
        self, run_path: Path, trials: int | None, on_started: Callable[[JobHandle], None] | None
    ) -> None:
        def start() -> JobHandle:
            run = RunDirectory.open(run_path)
            kind = str(run.read_job().get("kind") or "")
            if kind not in JOB_KINDS:
                raise UserInputError(run.damage() or f"{run.job_path} names no job kind this version knows.")
            settings = load_settings(run.config_path, environ={}, search_default_paths=False)
            if trials is not None:
                settings.optimization.trials = trials
            return start_job_of_kind(kind, settings, run_path, resume=True)

        start_from_thread(self, start, on_started or partial(self.open_dashboard, run_path),
                          partial(self.show_error, "The run cannot be resumed"))

    def go_home(self) -> None:
        """Back to the home screen, leaving whatever runs in the background running."""
        from heretic_tui.tui.screens.home import HomeScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()
        if isinstance(self.screen, HomeScreen):
            self.screen.refresh_runs()

    def action_help(self) -> None:
        """F1 opens the keys panel of the screen, and closes it again."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    async def action_quit(self) -> None:
        """Quit; when runs this session follows are still running, say first that they keep going and how to
        get back to them (ctrl+q again, or y, quits)."""
        live = self.live_followed_runs()
        if not live or self._quit_asked:
            self.exit(0, message=Text(reattach_message(live)) if live else None)
            return
        self._quit_asked = True

        def answered(confirmed: bool | None) -> None:
            self._quit_asked = False
            if confirmed:
                still_live = self.live_followed_runs()
                self.exit(0, message=Text(reattach_message(still_live)) if still_live else None)

        self.push_screen(ConfirmDialog("Quit heretic-tui?", reattach_message(live) + "\n\nQuit now?",
                                       confirm_label="Quit"), answered)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every navigation action, plus the current screen's own key actions, in the command palette."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Home", "Recent runs and the main actions", self.go_home)
        yield SystemCommand("New abliteration run", "Open the wizard (basic or advanced)", self.open_wizard)
        yield SystemCommand("Model browser", "Models in the HF cache, model folders and run outputs",
                            self.open_model_browser)
        yield SystemCommand("Runs", "Every run with its status: open, resume, delete", self.open_runs)
        yield SystemCommand("Chat with the configured model", "Chat with model.model from the settings",
                            lambda: self.open_chat(ChatModel.plain(self.settings.model)))
        yield SystemCommand("New fine-tuning run", "Open the fine-tune wizard (basic or advanced)",
                            self.open_finetune_wizard)
        yield SystemCommand("Upload a model folder", "Send a model folder to the Hugging Face Hub", self.open_upload)
        yield SystemCommand("Serve models", "An OpenAI-compatible server for the base model, trials or exports",
                            self.open_serve)
        yield SystemCommand("Doctor", "Check this machine: torch and CUDA, GPUs, disk, Hub, terminal", self.open_doctor)
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or not active.enabled or binding.action in seen or active.node is self:
                continue
            seen.add(binding.action)
            yield SystemCommand(
                f"{binding.description} ({key})",
                f"Key on this screen: {key}",
                partial(self.run_action, binding.action, active.node),
            )


def reattach_message(runs: list[Path]) -> str:
    """Which runs keep going after the app quits, and the command that reattaches each one."""
    if not runs:
        return ""
    lines = ["This run keeps running in the background:" if len(runs) == 1 else
             f"These {len(runs)} runs keep running in the background:"]
    for path in runs:
        lines.append(f"  heretic-tui attach {path}")
    lines.append("Run that command to reattach, or open the run from the home screen.")
    return "\n".join(lines)


def launch(
    *,
    model_path: str | None = None,
    settings: Settings | None = None,
    attach_run: Path | None = None,
    start_abliteration: bool = False,
) -> int:
    """Run the app full-screen until the user quits; returns the process exit code.

    No arguments open the home screen; ``model_path`` the actions for that model folder; ``settings`` with
    ``start_abliteration`` the dashboard of a new run; ``attach_run`` the dashboard of an existing run. Quitting
    never stops a running job.
    """
    app = HereticApp(
        settings=settings,
        model_path=model_path,
        attach_run=attach_run,
        start_settings=settings if start_abliteration else None,
    )
    result = app.run()
    if app.return_code not in (None, 0):
        return app.return_code
    return result or 0
