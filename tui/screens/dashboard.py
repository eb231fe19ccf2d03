"""The live dashboard of one run: what every kind shares (following, phases, memory, the worker log, the error,
cancel, kill, detach and resume), with one subclass per kind for what only that kind shows.

Everything on it is rebuilt from the run folder: the shared :class:`JobFollower` replays ``events.jsonl`` and then
follows it, posting one message per event; the screen folds them into a :class:`RunState` and redraws at most a
few times a second. Leaving the screen (detach) stops only the follower, never the run. A dead worker arrives as a
synthesized error event from the core, so the screen ends up "failed" with the last log lines instead of spinning
forever. The views of a kind (:mod:`abliteration_dashboard`, :mod:`finetune_dashboard`, :mod:`job_dashboard`) fill
the two slots :meth:`compose_main` and :meth:`compose_details`, add their keys and redraw in :meth:`redraw_view`.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Static

from heretic_tui.core.api import STATUS_CANCELLED, STATUS_FAILED, JobHandle, RunDirectory, attach, tail_lines
from heretic_tui.core.errors import UserInputError
from heretic_tui.tui.formatting import (
    escape_markup,
    format_duration,
    format_memory,
    format_memory_size,
    short_model_name,
    status_markup,
    truncate,
)
from heretic_tui.tui.job_follower import JobEventMessage, JobFollowEnded, JobFollower
from heretic_tui.tui.resources import ResourceSnapshot
from heretic_tui.tui.run_state import RunState
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.screens.dialogs import ConfirmDialog, MessageDialog
from heretic_tui.tui.widgets.following_log import FollowingLog
from heretic_tui.tui.widgets.phase_list import PhaseList

REDRAW_SECONDS = 0.2
LOG_POLL_SECONDS = 1.0
LOG_LINES = 200
KILL_OFFER_SECONDS = 60.0


class DashboardScreen(HereticScreen[None]):
    """Follows one run; ``handle`` is the one from starting the job, or None to attach to an existing run.

    ``kind`` is the job kind's name from job.json (the app reads it to choose the subclass), so the screen knows
    what it shows before the journal's first event arrives.
    """

    BINDINGS = [
        Binding("c", "cancel_run", "Cancel", tooltip="Cancel the run gracefully (asks first)"),
        Binding("k", "kill_run", "Kill", tooltip="Kill a worker that does not stop after a cancel"),
        Binding("d,escape", "detach", "Detach", tooltip="Back home; the run keeps going"),
        Binding("r", "resume", "Resume", tooltip="Resume a cancelled or failed run"),
        Binding("l", "toggle_log", "Log", tooltip="Show the worker log instead of the details, or back"),
        Binding("e", "show_error", "Error", tooltip="The full error and the last log lines"),
    ]
    VIEW_CLASS = "-job"
    """The CSS class of the kind's layout on ``#dashboard``."""

    def __init__(self, run_path: Path, handle: JobHandle | None = None, kind: str = "") -> None:
        super().__init__()
        self.run_path = Path(run_path)
        self.handle = handle
        self.kind_name = kind
        self.state = RunState(job=kind, run_dir=str(run_path))
        self.follower = JobFollower(self)
        self._redraw_pending = False
        self._log_offset = 0
        self._resources: ResourceSnapshot | None = None
        self._cancel_requested_at: float | None = None
        self._live_at_open = False
        self._damage: str | None = None
        self._keys_state: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="dashboard", classes=self.VIEW_CLASS):
            yield Static("", id="run-summary")
            with Horizontal(id="dashboard-top"):
                with Vertical(id="dashboard-side"):
                    yield PhaseList("", id="phases")
                    yield Static("", id="resources")
                yield from self.compose_main()
            yield Static("", id="run-error")
            with Horizontal(id="dashboard-bottom"):
                yield from self.compose_details()
                yield FollowingLog(id="worker-log", max_lines=2000)
        yield Footer()

    def compose_main(self) -> ComposeResult:
        """The kind's main panel beside the phases (a plot, a chart, results)."""
        yield from ()

    def compose_details(self) -> ComposeResult:
        """The kind's panel beside the worker log (a table, a plan); the log alone when the kind has none."""
        yield from ()

    def on_mount(self) -> None:
        self.sub_title = self.run_path.name
        self.query_one("#dashboard-side").border_title = "Progress"
        self.query_one("#worker-log").border_title = "worker.log"
        self.query_one("#run-error").display = False
        self.title_panels()
        if self.handle is None:
            try:
                self.handle = attach(self.run_path)
            except UserInputError as error:
                self.app.push_screen(MessageDialog("Cannot open this run", str(error)), self._leave)
                return
        self._live_at_open = self.handle.alive()
        self._damage = self.handle.run.damage()
        self.heretic.remember_followed_run(self.run_path)
        self._start_following()
        self._read_log()
        self.set_interval(LOG_POLL_SECONDS, self._tick)
        self._sample_resources()

    def title_panels(self) -> None:
        """Border titles of the kind's own panels."""

    def on_unmount(self) -> None:
        self.follower.stop()

    def _leave(self, _: object = None) -> None:
        self.dismiss()

    def _start_following(self) -> None:
        assert self.handle is not None
        self.state = RunState(job=self.kind_name, run_dir=str(self.run_path))
        self.restart_view()
        self.follower.follow(self.handle)

    def restart_view(self) -> None:
        """Forget what the kind's view derived from the previous replay (a resumed run replays from the start)."""

    def on_job_event_message(self, message: JobEventMessage) -> None:
        if not self.follower.is_current(message):
            return
        was_running = self.state.is_running
        self.state.apply(message.event)
        if message.event.terminal and was_running and self._live_at_open and not message.replayed:
            self._announce_end()
        self._schedule_redraw()

    def on_job_follow_ended(self, message: JobFollowEnded) -> None:
        if not self.follower.is_current(message):
            return
        self._read_log()
        self._redraw()

    def _announce_end(self) -> None:
        """Say how the run ended, on screen and to the terminal (bell and desktop notification), once."""
        status = self.state.status
        if status == STATUS_FAILED:
            title, message, severity = "Run failed", self.state.error_message[:300] or "The run failed.", "error"
        elif status == STATUS_CANCELLED:
            title, message, severity = "Run cancelled", "Completed work is saved; press r to resume.", "warning"
        else:
            title, message, severity = f"{self.kind_title} finished", self.finished_hint(), "information"
        self.notify(message, title=title, severity=severity)
        if status != STATUS_CANCELLED:
            self.heretic.alert_terminal(f"heretic-tui: {title.lower()}", f"{self.run_path.name}: {message}")

    @property
    def kind_title(self) -> str:
        kind = self.state.kind
        return kind.title if kind is not None else "Job"

    def finished_hint(self) -> str:
        """What to do next with a finished run of this kind."""
        return "Its results are in the run folder."

    def _schedule_redraw(self) -> None:
        if not self._redraw_pending:
            self._redraw_pending = True
            self.set_timer(REDRAW_SECONDS, self._redraw)

    def _tick(self) -> None:
        if self.state.is_running:
            self._read_log()
            self._redraw()
            self._sample_resources()

    @work(thread=True, group="resources", exclusive=True, exit_on_error=False)
    def _sample_resources(self) -> None:
        pid = RunDirectory(self.run_path).worker_pid() if self.state.is_running else None
        snapshot = self.heretic.resource_probe.sample(pid)
        self.app.call_from_thread(self._show_resources, snapshot)

    def _show_resources(self, snapshot: ResourceSnapshot) -> None:
        self._resources = snapshot
        self._render_resources()

    def _read_log(self) -> None:
        """Append what the worker wrote since the last read (the first read shows only the tail); the log panel
        keeps the newest line in view while the reader has not scrolled up to read older ones."""
        log_path = self.run_path / "worker.log"
        log = self.query_one("#worker-log", FollowingLog)
        try:
            size = log_path.stat().st_size
        except OSError:
            return
        if self._log_offset == 0 or size < self._log_offset:
            log.clear()
            log.write_lines(tail_lines(log_path, LOG_LINES))
            self._log_offset = size
            log.follow()
            return
        if size == self._log_offset:
            return
        with open(log_path, "rb") as handle:
            handle.seek(self._log_offset)
            data = handle.read(size - self._log_offset)
        complete = data.rfind(b"\n") + 1
        if complete == 0:
            return
        self._log_offset += complete
        text = data[:complete].decode("utf-8", errors="replace")
        lines = [line.split("\r")[-1].rstrip() for line in text.splitlines()]
        log.write_lines([line for line in lines if line])

    def _redraw(self) -> None:
        self._redraw_pending = False
        if not self.is_mounted:
            return
        now = self.heretic.clock()
        state = self.state
        self.query_one("#run-summary", Static).update(self._summary_markup(now))
        self.query_one("#phases", PhaseList).show(state, now)
        self.redraw_view(now)
        error = self.query_one("#run-error", Static)
        if self._damage is not None:
            error.update(f"[b]Damaged:[/b] {escape_markup(self._damage)}")
            error.display = True
        elif state.status == STATUS_FAILED:
            tail = [line for line in state.error_traceback.splitlines() if line.strip()][-3:]
            text = f"[b]Failed:[/b] {escape_markup(state.error_message)}"
            text += "\n[$text-muted]e: full error and log lines"
            text += " · r: resume (completed work is kept)[/]" if state.kind and state.kind.resumable else "[/]"
            if tail:
                text += "\n" + escape_markup("\n".join(tail))
            error.update(text)
            error.display = True
        elif state.status == STATUS_CANCELLED:
            resume = " · r: resume" if state.kind and state.kind.resumable else ""
            error.update(f"[b]Cancelled:[/b] {escape_markup(state.cancel_reason)}{resume}")
            error.display = True
        else:
            error.display = False
        self.sub_title = f"{self.run_path.name} · {state.status}"
        self._refresh_keys()

    def redraw_view(self, now: float) -> None:
        """Redraw the kind's own panels from ``self.state``."""

    def _refresh_keys(self) -> None:
        """Re-evaluate which keys apply, only when that can have changed (it rebuilds the footer)."""
        key = (self.state.status, self._cancel_requested_at is not None, *self.keys_state())
        if key != self._keys_state:
            self._keys_state = key
            self.refresh_bindings()

    def keys_state(self) -> tuple[object, ...]:
        """What the kind's keys depend on, besides the status."""
        return ()

    def _summary_markup(self, now: float) -> str:
        """Two lines: what runs and how far it is, then the figures that matter."""
        state = self.state
        model = truncate(short_model_name(state.model or "?"), 34)
        first = [f"[b]{escape_markup(model)}[/b]", status_markup(state.status), *self.progress_parts(now)]
        eta = state.eta_seconds(now)
        if eta is not None:
            first.append(self.eta_part(eta))
        else:
            phase_eta = state.phase_eta_seconds(now)
            if phase_eta is not None and state.current_phase is not None:
                titles = state.kind.phase_titles if state.kind is not None else {}
                first.append(f"{titles.get(state.current_phase, state.current_phase)} ends in "
                             f"{format_duration(phase_eta)}")
        if self._cancel_requested_at is not None and state.is_running:
            first.append("[$warning]cancelling…[/]")
        second = [f"elapsed {format_duration(state.elapsed_seconds(now))}", *self.figure_parts()]
        return " · ".join(first) + "\n" + " · ".join(second)

    def progress_parts(self, now: float) -> list[str]:
        """How far the run is, in the kind's own units (trials, steps)."""
        return []

    def eta_part(self, eta: float) -> str:
        """The run's time left as the header says it."""
        return f"ETA {format_duration(eta)}"

    def figure_parts(self) -> list[str]:
        """The kind's figures that matter most, after the elapsed time."""
        return []

    def _render_resources(self) -> None:
        snapshot = self._resources
        widget = self.query_one("#resources", Static)
        if snapshot is None:
            widget.update("[$text-muted]measuring…[/]")
            return
        ram = f"RAM {format_memory(snapshot.ram_used_bytes, snapshot.ram_total_bytes)}"
        if snapshot.worker_ram_bytes is not None:
            ram += f" · worker {format_memory_size(snapshot.worker_ram_bytes)}"
        lines = [ram]
        for gpu in snapshot.gpus:
            lines.append(f"GPU{gpu.index} {format_memory(gpu.used_bytes, gpu.total_bytes)}")
        if not snapshot.gpus:
            lines.append("GPU: none visible")
        widget.update("\n".join(lines))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that make no sense in the current state are hidden from the footer and do nothing."""
        running = self.state.is_running
        if action == "cancel_run":
            return running
        if action == "kill_run":
            return running and self._cancel_requested_at is not None
        if action == "resume":
            return self.state.can_resume and self.state.status != "finished"
        if action == "show_error":
            return self.state.status == STATUS_FAILED
        return True

    def action_cancel_run(self) -> None:
        def answered(confirmed: bool | None) -> None:
            if confirmed and self.handle is not None:
                if self.handle.request_cancel():
                    self._cancel_requested_at = self.heretic.clock()
                    self.notify(
                        "The worker stops at the next safe point and saves completed work. If it does not stop "
                        f"within {KILL_OFFER_SECONDS:.0f}s, press k to kill it.",
                        title="Cancelling",
                    )
                    self.set_timer(KILL_OFFER_SECONDS, self._offer_kill)
                else:
                    self.notify("The worker is not running any more.", severity="warning")
                self._redraw()

        self.app.push_screen(
            ConfirmDialog(
                "Cancel this run?",
                "The worker finishes at the next safe point (the step in flight is abandoned), saves its work and "
                "stops." + (" The run can be resumed later with r." if self.state.kind and self.state.kind.resumable
                            else ""),
                confirm_label="Cancel run",
                danger=True,
            ),
            answered,
        )

    def _offer_kill(self) -> None:
        if self.state.is_running and self.handle is not None and self.handle.alive():
            self.notify("The worker has not stopped yet. Press k to kill it.", severity="warning", timeout=30)
            self._refresh_keys()

    def action_kill_run(self) -> None:
        def answered(confirmed: bool | None) -> None:
            if confirmed and self.handle is not None:
                self.handle.kill()

        self.app.push_screen(
            ConfirmDialog(
                "Kill the worker?",
                "The worker is stopped at once. Completed work is kept; the step in flight is lost.",
                confirm_label="Kill",
                danger=True,
            ),
            answered,
        )

    def action_detach(self) -> None:
        self.follower.stop()
        if self.state.is_running:
            self.notify("The run keeps going; open it again from the home screen.", title="Detached")
        self.heretic.go_home()

    def action_toggle_log(self) -> None:
        """Give the bottom row to the worker log (or back); narrow terminals show one at a time."""
        self.query_one("#dashboard").toggle_class("-log-only")
        self.query_one("#worker-log", FollowingLog).follow()

    def action_show_error(self) -> None:
        self.app.push_screen(
            MessageDialog("The run failed", self.state.error_message, details=self.state.error_traceback)
        )

    def action_resume(self) -> None:
        self.resume(None)

    def resume(self, trials: int | None) -> None:
        self.heretic.resume_run(self.run_path, trials, on_started=self._resumed)

    def _resumed(self, handle: JobHandle) -> None:
        self.handle = handle
        self._live_at_open = True
        self._damage = handle.run.damage()
        self._cancel_requested_at = None
        self._start_following()
        self.notify(self.resumed_message(), title="Resumed")

    def resumed_message(self) -> str:
        return "The run continues where it stopped."
