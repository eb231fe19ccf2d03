"""The dashboard of a fine-tuning run: the loss chart, the plan and results, and the knowledge test at the end.

The wording of the plan and results lives in :mod:`heretic_tui.tui.finetune_view`; this screen places it and adds
what to do with the result (upload it, fine-tune it again).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from heretic_tui.core.api import STATUS_FINISHED, JobHandle
from heretic_tui.tui.finetune_view import (
    CURVES,
    OPTIONAL_CURVES,
    best_model_folder,
    curve_points,
    details_markup,
    knowledge_table,
    read_knowledge_items,
    step_summary,
)
from heretic_tui.tui.screens.dashboard import DashboardScreen
from heretic_tui.tui.widgets.loss_chart import LossChart


class FinetuneDashboard(DashboardScreen):
    """Steps, losses and the plan of a fine-tuning run; ``u`` uploads the result, ``f`` trains it further."""

    BINDINGS = [
        Binding("u", "upload", "Upload", tooltip="Upload the fine-tuned model to the Hugging Face Hub"),
        Binding("f", "finetune_again", "Fine-tune", tooltip="Fine-tune the result further (opens the wizard)"),
        Binding("c", "next_curve", "Curve", tooltip="Show the next curve: loss, learning rate, grad norm, tokens/s"),
    ]
    VIEW_CLASS = "-finetune"

    def __init__(self, run_path: Path, handle: JobHandle | None = None, kind: str = "finetune") -> None:
        super().__init__(run_path, handle, kind)
        self._knowledge_shown = False
        self._curve = 0

    def compose_main(self) -> ComposeResult:
        yield LossChart(id="loss-chart")

    def compose_details(self) -> ComposeResult:
        with VerticalScroll(id="finetune-details"):
            yield Static("", id="knowledge-test")
            yield Static("", id="finetune-text")

    def title_panels(self) -> None:
        chart = self.query_one("#loss-chart", LossChart)
        _, title, legend = CURVES[self._curve]
        chart.border_title = title
        chart.border_subtitle = legend
        self.query_one("#finetune-details").border_title = "Plan and results"

    def restart_view(self) -> None:
        self._knowledge_shown = False

    def redraw_view(self, now: float) -> None:
        """Loss chart, plan and results; the knowledge test is read from report.json once the run has finished."""
        state = self.state
        train, evaluation = curve_points(state, CURVES[self._curve][0])
        self.query_one("#loss-chart", LossChart).set_losses(train, evaluation, state.step_total)
        self.query_one("#finetune-text", Static).update(details_markup(state))
        knowledge = self.query_one("#knowledge-test", Static)
        if state.status == STATUS_FINISHED and not self._knowledge_shown:
            self._knowledge_shown = True
            report = Path(state.report_path or state.artifacts.get("report") or self.run_path / "report.json")
            knowledge.update(knowledge_table(read_knowledge_items(report)))
        knowledge.display = self._knowledge_shown

    def action_next_curve(self) -> None:
        self._curve = (self._curve + 1) % len(CURVES)
        while CURVES[self._curve][0] in OPTIONAL_CURVES and not self.state.training_curves.get(CURVES[self._curve][0]):
            self._curve = (self._curve + 1) % len(CURVES)
        self.title_panels()
        self.redraw_view(0.0)

    def keys_state(self) -> tuple[object, ...]:
        return tuple(self.state.artifacts)

    def progress_parts(self, now: float) -> list[str]:
        return step_summary(self.state)

    def finished_hint(self) -> str:
        return "u uploads the result, f fine-tunes it further."

    def resumed_message(self) -> str:
        return "Training continues from the last checkpoint."

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("upload", "finetune_again"):
            return best_model_folder(self.state) is not None
        return super().check_action(action, parameters)

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
