"""Refusals against KL divergence for every trial, drawn with braille dots, the Pareto front marked.

Trials on the Pareto front get a full marker (they are the ones worth choosing between) and the best trial a star
(see :mod:`heretic_tui.tui.widgets.braille` for why the drawing is our own). The KL axis is linear or logarithmic:
KL values of a study span orders of magnitude, and on a linear axis one trial that broke the model squashes every
other trial against the left edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from heretic_tui.tui.widgets.braille import BrailleCanvas, assemble_plot

FRONT_MARKER = "●"
BEST_MARKER = "★"


@dataclass(frozen=True)
class PlotPoint:
    number: int
    kl: float
    refusals: int


@dataclass(frozen=True)
class KlAxis:
    """Where a KL value lands on the x axis (0 at the left edge, 1 at the right) and how the axis is labelled."""

    low: float
    high: float
    log: bool

    @classmethod
    def fit(cls, values: list[float], log: bool) -> KlAxis:
        """Linear: 0 to a little past the largest KL. Log: the smallest to the largest positive KL, padded."""
        if not log:
            largest = max(values, default=0.0)
            return cls(0.0, largest * 1.05 if largest > 0 else 1.0, False)
        positive = [value for value in values if value > 0] or [1.0]
        low, high = math.log10(min(positive)), math.log10(max(positive))
        padding = max(0.05 * (high - low), 0.1)
        return cls(low - padding, high + padding, True)

    def position(self, kl: float) -> float:
        if not self.log:
            return kl / self.high
        if kl <= 0:
            return 0.0
        return (math.log10(kl) - self.low) / (self.high - self.low)

    @property
    def labels(self) -> tuple[str, str, str]:
        """Left label, right label and the axis title."""
        if not self.log:
            return "0", f"{self.high:.3g}", " KL divergence → "
        return f"{10 ** self.low:.2g}", f"{10 ** self.high:.2g}", " KL divergence (log) → "


class ParetoPlot(Widget):
    """A scatter plot of trials; call :meth:`set_points` with the finished trials and the front."""

    COMPONENT_CLASSES = {
        "pareto-plot--axis",
        "pareto-plot--trial",
        "pareto-plot--front",
        "pareto-plot--best",
        "pareto-plot--baseline",
    }

    DEFAULT_CSS = """
    ParetoPlot {
        height: 1fr;
        min-height: 6;
    }
    ParetoPlot > .pareto-plot--axis { color: $text-muted; }
    ParetoPlot > .pareto-plot--trial { color: $primary; }
    ParetoPlot > .pareto-plot--front { color: $warning; text-style: bold; }
    ParetoPlot > .pareto-plot--best { color: $success; text-style: bold; }
    ParetoPlot > .pareto-plot--baseline { color: $error; }
    """

    log_kl: reactive[bool] = reactive(False)
    """Draw the KL axis on a log scale."""

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.points: list[PlotPoint] = []
        self.front: set[int] = set()
        self.best: int | None = None
        self.refusal_total = 0
        self.baseline: int | None = None

    def set_points(
        self,
        points: list[PlotPoint],
        front: set[int],
        best: int | None,
        refusal_total: int,
        baseline: int | None,
    ) -> None:
        self.points = points
        self.front = front
        self.best = best
        self.refusal_total = refusal_total
        self.baseline = baseline
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        axis = self.get_component_rich_style("pareto-plot--axis")
        if not self.points:
            return Text("No finished trials yet.\nEach trial appears here as a dot:\nrefusals (up) against KL (right).",
                        style=axis)
        top = max([self.refusal_total, self.baseline or 0, *(point.refusals for point in self.points)]) or 1
        kl_axis = KlAxis.fit([point.kl for point in self.points], self.log_kl)
        label_width = max(len(str(top)), 1)
        columns = max(4, width - label_width - 1)
        rows = max(2, height - 2)
        canvas = self._draw(columns, rows, top, kl_axis)
        labels = {0: str(top), rows - 1: "0"}
        if rows >= 5:
            labels[(rows - 1) // 2] = str(round(top * (1 - ((rows - 1) // 2) / (rows - 1))))
        left, right, title = kl_axis.labels
        return assemble_plot(canvas, labels, label_width, left, right, title, axis)

    def _draw(self, columns: int, rows: int, top: int, kl_axis: KlAxis) -> BrailleCanvas:
        canvas = BrailleCanvas(columns, rows)
        trial_style = self.get_component_rich_style("pareto-plot--trial")
        front_style = self.get_component_rich_style("pareto-plot--front")
        best_style = self.get_component_rich_style("pareto-plot--best")

        def position(point: PlotPoint) -> tuple[int, int]:
            x = round(kl_axis.position(point.kl) * (canvas.dot_columns - 1))
            y = round((1 - point.refusals / top) * (canvas.dot_rows - 1))
            return min(max(x, 0), canvas.dot_columns - 1), min(max(y, 0), canvas.dot_rows - 1)

        ordered = sorted(self.points, key=lambda point: (point.number == self.best, point.number in self.front))
        for point in ordered:
            x, y = position(point)
            row, column = y // 4, x // 2
            if point.number == self.best:
                canvas.mark(column, row, BEST_MARKER, best_style)
            elif point.number in self.front:
                if canvas.cells[row][column] != BEST_MARKER:
                    canvas.mark(column, row, FRONT_MARKER, front_style)
            else:
                canvas.dot(x, y, trial_style)
        if self.baseline is not None:
            baseline_row = min(rows - 1, round((1 - self.baseline / top) * (canvas.dot_rows - 1)) // 4)
            baseline_style = self.get_component_rich_style("pareto-plot--baseline")
            for column in range(columns):
                if canvas.is_empty(column, baseline_row):
                    canvas.mark(column, baseline_row, "┄", baseline_style)
        return canvas
