"""The doctor screen: the machine's checks (torch and CUDA, GPUs, disk, Hub, terminal), each with its fix.

The checks run in a child process (``run_doctor`` in the core's API), so the app never imports torch or opens a
CUDA context of its own; the screen measures its own terminal and hands that in, since the child has none.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from heretic_tui.core.api import run_doctor
from heretic_tui.tui.formatting import escape_markup
from heretic_tui.tui.screens.base import HereticScreen

LEVEL_MARKUP = {"ok": "[$success]ok[/]     ", "warning": "[$warning]warning[/]", "problem": "[$error]PROBLEM[/]"}


def checks_markup(checks: list) -> str:
    lines = ["[b]Doctor[/b]  what this machine offers a run", ""]
    for check in checks:
        lines.append(f"{LEVEL_MARKUP.get(check.level, check.level)}  [b]{escape_markup(check.name):16s}[/b] "
                     f"{escape_markup(check.detail)}")
        if check.fix and check.level != "ok":
            lines.append(f"           [$text-muted]fix: {escape_markup(check.fix)}[/]")
    counts = {level: sum(check.level == level for check in checks) for level in LEVEL_MARKUP}
    lines += ["", f"{counts['ok']} ok, {counts['warning']} warning(s), {counts['problem']} problem(s)"]
    return "\n".join(lines)


class DoctorScreen(HereticScreen[None]):
    BINDINGS = [
        Binding("g", "check_again", "Check again"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="doctor"):
            yield Static("Checking the machine (torch, GPUs, disk, Hub)…", id="doctor-report")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "doctor"
        self.action_check_again()

    def action_check_again(self) -> None:
        self.query_one("#doctor-report", Static).update("Checking the machine (torch, GPUs, disk, Hub)…")
        size = self.app.size
        self._check(size.width, size.height, self.app.console.color_system)

    @work(thread=True, group="doctor", exclusive=True, exit_on_error=False)
    def _check(self, columns: int, lines: int, color_system: str | None) -> None:
        checks = run_doctor(self.heretic.settings, columns=columns, lines=lines, color_system=color_system)
        self.app.call_from_thread(self._show, checks)

    def _show(self, checks: list) -> None:
        self.checks = checks
        self.query_one("#doctor-report", Static).update(checks_markup(checks))
