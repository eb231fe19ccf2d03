"""The dashboard of an abliteration run: the refusals-vs-KL plot, the trial table, and what to do with a trial.

It opens on the chosen trial (the best so far while the study runs), the table's cursor stays there until the
person moves it, and the plot's KL axis can switch to a log scale so one far-off trial does not squash the rest.

A run whose study several workers share follows that study too: every few seconds, in a thread, the dashboard
reads every worker's trials from the storage (who ran which, the ones in flight, the front over all), so it shows
the whole study whichever worker's folder it was opened on, and keeps showing it while workers come and go.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from heretic_tui.core.api import SharedStudyReader, StudySnapshot, approximate_duration
from heretic_tui.core.errors import HereticError, UserInputError
from heretic_tui.core.settings import setting_fields, validate_value
from heretic_tui.tui.formatting import format_duration, format_kl, format_refusals
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.screens.dialogs import ValueDialog
from heretic_tui.tui.human_labels import HumanLabels
from heretic_tui.tui.screens.trial_actions import MORE_TRIALS, TrialActionsScreen
from heretic_tui.tui.widgets.pareto_plot import ParetoPlot, PlotPoint
from heretic_tui.tui.widgets.trial_table import TrialTable

PLOT_LEGEND = "● Pareto  ★ best  ┄ baseline"
STUDY_POLL_SECONDS = 2.0
"""How often a dashboard of a shared study reads the other workers' trials from its storage."""


def search_description(search: dict[str, object]) -> str:
    """How the study samples, as the run header says it: ``10 random, then TPE`` (empty when not reported), and
    how many trials share a forward pass when more than one does (``, 4 trials per pass``)."""
    random_trials = search.get("random_trials")
    if not isinstance(random_trials, int):
        return ""
    sampler = str(search.get("sampler") or "a guided sampler")
    guided = search.get("guided_trials")
    if isinstance(guided, int) and guided <= 0:
        description = f"all {random_trials} random"
    else:
        description = f"{random_trials} random, then {sampler}"
    trial_batch = search.get("trial_batch")
    if isinstance(trial_batch, int) and trial_batch > 1:
        description += f", {trial_batch} trials per pass"
    return description


class AbliterationDashboard(DashboardScreen):
    """Phases, the plot and the trials of an abliteration study; ``a`` opens the selected trial's actions."""

    BINDINGS = [
        Binding("m", "more_trials", "More trials", tooltip="Continue the study up to a larger number of trials"),
        Binding("a", "trial_actions", "Trial", tooltip="Export, chat or compare the selected trial"),
        Binding("s", "sort", "Sort", tooltip="Sort the trials by the next column"),
        Binding("x", "kl_scale", "KL scale", tooltip="Switch the plot's KL axis between linear and log"),
    ]
    VIEW_CLASS = "-trials"

    def on_mount(self) -> None:
        self._human_labels = HumanLabels(self.run_path)
        self._study_reader = SharedStudyReader(self.run_path)
        self._study_problem = ""
        if self._study_reader.shared:
            self.set_interval(STUDY_POLL_SECONDS, self._read_study)
            self._read_study()

    @work(thread=True, group="study", exclusive=True, exit_on_error=False)
    def _read_study(self) -> None:
        try:
            snapshot = self._study_reader.read()
        except HereticError as error:
            self.app.call_from_thread(self._study_unreadable, str(error))
            return
        self.app.call_from_thread(self._show_study, snapshot)

    def _show_study(self, snapshot: StudySnapshot) -> None:
        self._study_problem = ""
        self.state.apply_study(snapshot)
        self._schedule_redraw()

    def _study_unreadable(self, message: str) -> None:
        """Say once that the storage does not answer; the dashboard keeps what it read last and tries again."""
        if message != self._study_problem:
            self._study_problem = message
            self.notify(message, title="Shared study", severity="warning", timeout=10)

    def compose_main(self) -> ComposeResult:
        yield ParetoPlot(id="plot")

    def compose_details(self) -> ComposeResult:
        yield TrialTable(id="trials")

    def title_panels(self) -> None:
        plot = self.query_one("#plot", ParetoPlot)
        plot.border_title = "Refusals vs KL"
        plot.border_subtitle = PLOT_LEGEND
        self.query_one("#trials").border_title = "Trials"

    def on_screen_resume(self) -> None:
        """Back from a trial's screens: labels may have changed its counts, so draw them again."""
        self._schedule_redraw()

    def redraw_view(self, now: float) -> None:
        state = self.state
        self._human_labels.apply(state)
        best = state.best_trial()
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
        table = self.query_one("#trials", TrialTable)
        table.show(list(state.trials.values()), front, best.number if best else None)
        table.border_title = f"Trials ({len(finished)} done)"

    def keys_state(self) -> tuple[object, ...]:
        return (bool(self.state.finished_trials),)

    def progress_parts(self, now: float) -> list[str]:
        state = self.state
        if not state.trial_total:
            return []
        part = f"trial {len(state.finished_trials)}/{state.trial_total}"
        search = search_description(state.search)
        return [f"{part} · {search}" if search else part]

    def eta_part(self, eta: float) -> str:
        """The worker's estimate is a median of recent trials, so it reads as one (``about 12 min left``)."""
        if self.state.study_estimate is None:
            return super().eta_part(eta)
        return f"{approximate_duration(eta)} left"

    def figure_parts(self) -> list[str]:
        state = self.state
        parts = []
        if state.baseline_refusals is not None:
            parts.append(f"baseline {format_refusals(state.baseline_refusals, state.baseline_total)}")
        best = state.best_trial()
        if best is not None:
            label = "chosen" if state.summary.get("chosen_trial") == best.number else "best"
            parts.append(f"{label} [$success]#{best.number}[/] {format_refusals(best.refusals, best.refusal_total)} "
                         f"KL {format_kl(best.kl)}")
        if state.running_trial is not None:
            parts.append(f"running #{state.running_trial}")
        speeds = state.workers
        if len(speeds) > 1:
            parts.append(f"{len(speeds)} workers: " + ", ".join(
                f"{speed.worker} {speed.completed} done"
                + (f" {format_duration(speed.median_seconds)}/trial" if speed.median_seconds else "")
                + (" ▸" if speed.running else "")
                for speed in speeds))
        return parts

    def finished_hint(self) -> str:
        return "Press a on a trial for export, chat and comparison."

    def resumed_message(self) -> str:
        return "The study continues from its completed trials."

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "more_trials":
            return self.state.can_resume
        if action in ("trial_actions", "sort"):
            return bool(self.state.finished_trials)
        return super().check_action(action, parameters)

    def action_sort(self) -> None:
        column = self.query_one("#trials", TrialTable).cycle_sort()
        self.notify(f"Trials sorted by {column}", timeout=2)

    def action_kl_scale(self) -> None:
        plot = self.query_one("#plot", ParetoPlot)
        plot.log_kl = not plot.log_kl
        self.notify(f"KL axis: {'log' if plot.log_kl else 'linear'} scale", timeout=2)

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
                self.resume(int(value))

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
