"""The live dashboard of one run: phases, trial progress, the Pareto plot, the trial table, the worker log, memory.

Everything on it is rebuilt from the run folder: a thread worker replays ``events.jsonl`` and then follows it,
posting one message per event; the screen folds them into a :class:`RunState` and redraws at most a few times a
second. Leaving the screen (detach) stops only the follower, never the run. A dead worker arrives as a synthesized
error event from the core, so the screen ends up "failed" with the last log lines instead of spinning forever.
"""

from __future__ import annotations

import threading
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Log, Static

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import Event
from heretic_tui.core.api import JobHandle, RunDirectory, attach, tail_lines
from heretic_tui.core.settings import setting_fields, validate_value
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.formatting import (
    escape_markup,
    format_bytes,
    format_duration,
    format_kl,
    format_memory,
    format_refusals,
    short_model_name,
    status_markup,
    truncate,
)
from heretic_tui.tui.job_follower import JobEventMessage, JobFollowEnded, follow_run
from heretic_tui.tui.resources import ResourceSnapshot
from heretic_tui.tui.run_state import RunState
from heretic_tui.tui.screens.dialogs import ConfirmDialog, MessageDialog, ValueDialog
from heretic_tui.tui.screens.trial_actions import MORE_TRIALS, TrialActionsScreen
from heretic_tui.tui.finetune_view import (
    best_model_folder,
    details_markup,
    knowledge_table,
    loss_points,
    read_knowledge_items,
    step_summary,
)
from heretic_tui.tui.widgets.loss_chart import LossChart
from heretic_tui.tui.widgets.pareto_plot import ParetoPlot, PlotPoint
from heretic_tui.tui.widgets.phase_list import PhaseList
from heretic_tui.tui.widgets.trial_table import TrialTable

REDRAW_SECONDS = 0.2
LOG_POLL_SECONDS = 1.0
RESOURCE_POLL_SECONDS = 2.0
LOG_LINES = 200
KILL_OFFER_SECONDS = 60.0


class DashboardScreen(HereticScreen[None]):
    """Follows one run; ``handle`` is the one from starting the job, or None to attach to an existing run."""

    BINDINGS = [
        Binding("c", "cancel_run", "Cancel", tooltip="Cancel the run gracefully (asks first)"),
        Binding("k", "kill_run", "Kill", tooltip="Kill a worker that does not stop after a cancel"),
        Binding("d,escape", "detach", "Detach", tooltip="Back home; the run keeps going"),
        Binding("m", "more_trials", "More trials", tooltip="Continue the study up to a larger number of trials"),
        Binding("r", "resume", "Resume", tooltip="Resume a cancelled or failed run"),
        Binding("a", "trial_actions", "Trial", tooltip="Export, chat or compare the selected trial"),
        Binding("s", "sort", "Sort", tooltip="Sort the trials by the next column"),
        Binding("l", "toggle_log", "Log", tooltip="Show the worker log instead of the trials, or back"),
        Binding("e", "show_error", "Error", tooltip="The full error and the last log lines"),
        Binding("u", "upload", "Upload", tooltip="Upload the fine-tuned model to the Hugging Face Hub"),
        Binding("f", "finetune_again", "Fine-tune", tooltip="Fine-tune the result further (opens the wizard)"),
    ]

    def __init__(self, run_path: Path, handle: JobHandle | None = None) -> None:
        super().__init__()
        self.run_path = Path(run_path)
        self.handle = handle
        self.state = RunState(run_dir=str(run_path))
        self._stop_following = threading.Event()
        self._redraw_pending = False
        self._log_offset = 0
        self._resources: ResourceSnapshot | None = None
        self._cancel_requested_at: float | None = None
        self._opened_at = 0.0
        self._generation = 0
        self._keys_state: tuple[object, ...] = ()
        self._knowledge_shown = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="dashboard"):
            yield Static("", id="run-summary")
            with Horizontal(id="dashboard-top"):
                with Vertical(id="dashboard-side"):
                    yield PhaseList("", id="phases")
                    yield Static("", id="resources")
                yield ParetoPlot(id="plot")
                yield LossChart(id="loss-chart")
                yield Static("", id="job-results")
            yield Static("", id="run-error")
            with Horizontal(id="dashboard-bottom"):
                yield TrialTable(id="trials")
                with VerticalScroll(id="finetune-details"):
                    yield Static("", id="knowledge-test")
                    yield Static("", id="finetune-text")
                yield Log(id="worker-log", max_lines=2000, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self._opened_at = self.heretic.clock()
        self.sub_title = self.run_path.name
        self.query_one("#dashboard-side").border_title = "Progress"
        self.query_one("#plot").border_title = "Refusals vs KL"
        self.query_one("#plot").border_subtitle = "● Pareto  ★ best  ┄ baseline"
        self.query_one("#trials").border_title = "Trials"
        self.query_one("#worker-log").border_title = "worker.log"
        self.query_one("#run-error").display = False
        self.query_one("#job-results").border_title = "Results"
        self.query_one("#loss-chart").border_title = "Loss"
        self.query_one("#loss-chart").border_subtitle = "⠂ train  ● validation"
        self.query_one("#finetune-details").border_title = "Plan and results"
        if self.handle is None:
            try:
                self.handle = attach(self.run_path)
            except UserInputError as error:
                self.app.push_screen(MessageDialog("Cannot open this run", str(error)), self._leave)
                return
        self._start_following()
        self._read_log()
        self.set_interval(LOG_POLL_SECONDS, self._tick)
        self._sample_resources()

    def on_unmount(self) -> None:
        self._stop_following.set()

    def _leave(self, _: object = None) -> None:
        self.dismiss()

    def _start_following(self) -> None:
        self._stop_following.set()
        self._stop_following = threading.Event()
        self.state = RunState(run_dir=str(self.run_path))
        self._knowledge_shown = False
        self._generation += 1
        assert self.handle is not None
        self._follow(self.handle, self._stop_following, self._generation)

    @work(thread=True, group="follow", exclusive=True, exit_on_error=False)
    def _follow(self, handle: JobHandle, stop: threading.Event, generation: int) -> None:
        path = self.run_path

        def deliver(item: Event) -> None:
            self.post_message(JobEventMessage(path, item, generation))

        completed = follow_run(handle, deliver, stop)
        self.post_message(JobFollowEnded(path, stopped=not completed, generation=generation))

    def on_job_event_message(self, message: JobEventMessage) -> None:
        if message.generation != self._generation:
            return
        was_running = self.state.is_running
        self.state.apply(message.event)
        if message.event.terminal and was_running and message.event.time >= self._opened_at - 2:
            self._announce_end()
        self._schedule_redraw()

    def on_job_follow_ended(self, message: JobFollowEnded) -> None:
        if message.generation != self._generation:
            return
        self._read_log()
        self._redraw()

    def _announce_end(self) -> None:
        if self.state.status == "failed":
            self.notify(self.state.error_message[:300] or "The run failed.", title="Run failed", severity="error")
        elif self.state.status == "cancelled":
            self.notify("Completed trials are saved; press r to resume.", title="Run cancelled", severity="warning")
        elif self.state.is_finetune:
            self.notify("u uploads the result, f fine-tunes it further.", title="Fine-tuning finished")
        else:
            self.notify("Press a on a trial for export, chat and comparison.", title="Run finished")

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
        pid = RunDirectory(self.run_path).read_worker().get("pid") if self.state.is_running else None
        snapshot = self.heretic.resource_probe.sample(pid)
        self.app.call_from_thread(self._show_resources, snapshot)

    def _show_resources(self, snapshot: ResourceSnapshot) -> None:
        self._resources = snapshot
        self._render_resources()

    def _read_log(self) -> None:
        """Append what the worker wrote since the last read (the first read shows only the tail)."""
        log_path = self.run_path / "worker.log"
        log = self.query_one("#worker-log", Log)
        try:
            size = log_path.stat().st_size
        except OSError:
            return
        if self._log_offset == 0 or size < self._log_offset:
            log.clear()
            log.write_lines(tail_lines(log_path, LOG_LINES))
            self._log_offset = size
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
        best = state.best_trial()
        rows = list(state.trials.values())
        front = set(state.pareto)
        finished = state.finished_trials
        plot = self.query_one("#plot", ParetoPlot)
        plot.set_points(
            [PlotPoint(row.number, row.kl or 0.0, row.refusals or 0) for row in finished],
            front,
            best.number if best else None,
            max((row.refusal_total for row in finished), default=state.baseline_total or 0),
            state.baseline_refusals,
        )
        self.query_one("#trials", TrialTable).show(rows, front, best.number if best else None)
        self.query_one("#trials", TrialTable).border_title = f"Trials ({len(finished)} done)"
        self.query_one("#dashboard").set_class(not state.has_trials and not state.is_finetune, "-job")
        self.query_one("#dashboard").set_class(state.is_finetune, "-finetune")
        if state.is_finetune:
            self._redraw_finetune()
        elif not state.has_trials:
            self.query_one("#job-results", Static).update(self._results_markup())
        error = self.query_one("#run-error", Static)
        if state.status == "failed":
            tail = [line for line in state.error_traceback.splitlines() if line.strip()][-3:]
            text = f"[b]Failed:[/b] {escape_markup(state.error_message)}"
            text += "\n[$text-muted]e: full error and log lines · r: resume (completed trials are kept)[/]"
            if tail:
                text += "\n" + escape_markup("\n".join(tail))
            error.update(text)
            error.display = True
        elif state.status == "cancelled":
            error.update(f"[b]Cancelled:[/b] {escape_markup(state.cancel_reason)} · r: resume")
            error.display = True
        else:
            error.display = False
        self.sub_title = f"{self.run_path.name} · {state.status}"
        self._refresh_keys()

    def _redraw_finetune(self) -> None:
        """Loss chart, plan and results; the knowledge test is read from report.json once the run has finished."""
        state = self.state
        train, evaluation = loss_points(state)
        self.query_one("#loss-chart", LossChart).set_losses(train, evaluation, state.step_total)
        self.query_one("#finetune-text", Static).update(details_markup(state))
        knowledge = self.query_one("#knowledge-test", Static)
        if state.status == "finished" and not self._knowledge_shown:
            self._knowledge_shown = True
            report = Path(state.report_path or state.artifacts.get("report") or self.run_path / "report.json")
            knowledge.update(knowledge_table(read_knowledge_items(report)))
        knowledge.display = self._knowledge_shown

    def _refresh_keys(self) -> None:
        """Re-evaluate which keys apply, only when that can have changed (it rebuilds the footer)."""
        key = (self.state.status, self._cancel_requested_at is not None, bool(self.state.finished_trials),
               tuple(self.state.artifacts))
        if key != self._keys_state:
            self._keys_state = key
            self.refresh_bindings()

    def _summary_markup(self, now: float) -> str:
        """Two lines: what runs and how far it is, then the figures that matter (baseline, best so far)."""
        state = self.state
        done = len(state.finished_trials)
        model = truncate(short_model_name(state.model or "?"), 34)
        first = [f"[b]{escape_markup(model)}[/b]", status_markup(state.status)]
        if state.is_finetune:
            first += step_summary(state)
        if state.trial_total:
            first.append(f"trial {done}/{state.trial_total}")
        eta = state.eta_seconds(now)
        if eta is not None:
            first.append(f"ETA {format_duration(eta)}")
        if self._cancel_requested_at is not None and state.is_running:
            first.append("[$warning]cancelling…[/]")
        second = [f"elapsed {format_duration(state.elapsed_seconds(now))}"]
        if state.baseline_refusals is not None:
            second.append(f"baseline {format_refusals(state.baseline_refusals, state.baseline_total)}")
        best = state.best_trial()
        if best is not None:
            label = "chosen" if state.summary.get("chosen_trial") == best.number else "best"
            second.append(
                f"{label} [$success]#{best.number}[/] {format_refusals(best.refusals, best.refusal_total)} "
                f"KL {format_kl(best.kl)}"
            )
        if state.running_trial is not None:
            second.append(f"running #{state.running_trial}")
        return " · ".join(first) + "\n" + " · ".join(second)

    def _results_markup(self) -> str:
        """What a job other than an abliteration produced: its figures and the files it wrote."""
        state = self.state
        lines = []
        for name, values in state.metrics.items():
            figures = " · ".join(
                f"{escape_markup(str(key))} {escape_markup(str(value))}" for key, value in values.items()
            )
            lines.append(f"[b]{escape_markup(name)}[/b]  {figures}")
        for name, path in state.artifacts.items():
            lines.append(f"[$success]✔[/] {escape_markup(name)}: {escape_markup(path)}")
        if not lines:
            return "[$text-muted]Results appear here when the job writes them.[/]"
        return "\n".join(lines)

    def _render_resources(self) -> None:
        snapshot = self._resources
        widget = self.query_one("#resources", Static)
        if snapshot is None:
            widget.update("[$text-muted]measuring…[/]")
            return
        ram = f"RAM {format_memory(snapshot.ram_used_bytes, snapshot.ram_total_bytes)}"
        if snapshot.worker_ram_bytes is not None:
            ram += f" · worker {format_bytes(snapshot.worker_ram_bytes)}"
        lines = [ram]
        for gpu in snapshot.gpus:
            lines.append(f"GPU{gpu.index} {format_memory(gpu.used_bytes, gpu.total_bytes)}")
        if not snapshot.gpus:
            lines.append("GPU: none visible")
        widget.update("\n".join(lines))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that make no sense in the current state are hidden from the footer and do nothing."""
        running = self.state.is_running
        if action in ("cancel_run",):
            return running
        if action == "kill_run":
            return running and self._cancel_requested_at is not None
        if action == "more_trials":
            return self.state.can_resume and self.state.has_trials
        if action in ("upload", "finetune_again"):
            return self.state.is_finetune and best_model_folder(self.state) is not None
        if action == "resume":
            return self.state.can_resume and self.state.status != "finished"
        if action == "show_error":
            return self.state.status == "failed"
        if action in ("trial_actions", "sort"):
            return bool(self.state.finished_trials)
        return True

    def action_cancel_run(self) -> None:
        def answered(confirmed: bool | None) -> None:
            if confirmed and self.handle is not None:
                if self.handle.request_cancel():
                    self._cancel_requested_at = self.heretic.clock()
                    self.notify(
                        "The worker stops at the next safe point and saves completed trials. If it does not stop "
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
                "The worker finishes at the next safe point (the trial in flight is abandoned), saves the study and "
                "stops. The run can be resumed later with r.",
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
                "The worker is stopped at once. Completed trials are in the study; the trial in flight is lost.",
                confirm_label="Kill",
                danger=True,
            ),
            answered,
        )

    def action_detach(self) -> None:
        self._stop_following.set()
        if self.state.is_running:
            self.notify("The run keeps going; open it again from the home screen.", title="Detached")
        self.heretic.go_home()

    def action_sort(self) -> None:
        column = self.query_one("#trials", TrialTable).cycle_sort()
        self.notify(f"Trials sorted by {column}", timeout=2)

    def action_toggle_log(self) -> None:
        """Give the bottom row to the worker log (or back to the trials); narrow terminals show one at a time."""
        self.query_one("#dashboard").toggle_class("-log-only")

    def action_show_error(self) -> None:
        self.app.push_screen(
            MessageDialog("The run failed", self.state.error_message, details=self.state.error_traceback)
        )

    def action_trial_actions(self) -> None:
        trial = self.query_one("#trials", TrialTable).selected_trial
        if trial is None:
            best = self.state.best_trial()
            trial = best.number if best else None
        if trial is None or trial not in self.state.trials or not self.state.trials[trial].finished:
            return

        def closed(result: str | None) -> None:
            if result == MORE_TRIALS:
                self.action_more_trials()

        row = self.state.trials[trial]
        self.app.push_screen(TrialActionsScreen(self.run_path, trial, row, trial in self.state.pareto), closed)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_trial_actions()

    def action_resume(self) -> None:
        self._resume(None)

    def action_upload(self) -> None:
        folder = best_model_folder(self.state)
        if folder is not None:
            self.heretic.open_upload(Path(folder))

    def action_finetune_again(self) -> None:
        folder = self.state.artifacts.get("merged_model")
        if folder is None:
            self.notify("Only a merged model can be trained further; set finetune.merge_adapter to write one.",
                        severity="warning")
            return
        self.heretic.open_finetune_wizard(model=folder)

    def action_more_trials(self) -> None:
        done = len(self.state.finished_trials)
        spec = next(spec for spec in setting_fields() if spec.key == "optimization.trials")

        def check(text: str) -> str | None:
            try:
                value = validate_value(spec, int(text.strip()), "Trials")
            except (ValueError, UserInputError):
                return f"A whole number from {done + 1} to {spec.maximum:g}."
            if value <= done:
                return f"The study already has {done} trials; give a larger total."
            return None

        def answered(value: str | None) -> None:
            if value is not None:
                self._resume(int(value))

        self.app.push_screen(
            ValueDialog(
                "Run more trials",
                f"The study has {done} finished trials. Total number of trials to reach (the study continues "
                "where it stopped; nothing is recomputed):",
                value=str(max(done + 10, self.state.trial_total + 10)),
                check=check,
            ),
            answered,
        )

    def _resume(self, trials: int | None) -> None:
        self.heretic.resume_run(self.run_path, trials, on_started=self._resumed)

    def _resumed(self, handle: JobHandle) -> None:
        finetune = self.state.is_finetune
        self.handle = handle
        self._cancel_requested_at = None
        self._start_following()
        if finetune:
            self.notify("Training continues from the last checkpoint.", title="Resumed")
        else:
            self.notify("The study continues from its completed trials.", title="Resumed")
