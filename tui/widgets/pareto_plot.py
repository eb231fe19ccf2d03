"""Refusals against KL divergence for every trial, drawn with braille dots, the Pareto front marked.

No plotting library is installed on a typical GPU box's Python, and a scatter of a few hundred points needs none:
each character cell holds a 2x4 grid of braille dots, so an 40x10 cell plot resolves 80x40 positions. Trials on the
Pareto front get a full marker (they are the ones worth choosing between) and the best trial a star.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from heretic_tui.tui.widgets.braille import BrailleCanvas, assemble_plot

FRONT_MARKER = "●"
BEST_MARKER = "★"


@dataclass(frozen=True)
class PlotPoint:
    number: int
    kl: float
    refusals: int


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
        largest_kl = max(point.kl for point in self.points)
        kl_limit = largest_kl * 1.05 if largest_kl > 0 else 1.0
        label_width = max(len(str(top)), 1)
        columns = max(4, width - label_width - 1)
        rows = max(2, height - 2)
        canvas = self._draw(columns, rows, top, kl_limit)
        labels = {0: str(top), rows - 1: "0"}
        if rows >= 5:
            labels[(rows - 1) // 2] = str(round(top * (1 - ((rows - 1) // 2) / (rows - 1))))
        return assemble_plot(canvas, labels, label_width, "0", f"{kl_limit:.3g}", " KL divergence → ", axis)

    def _draw(self, columns: int, rows: int, top: int, kl_limit: float) -> BrailleCanvas:
        canvas = BrailleCanvas(columns, rows)
        trial_style = self.get_component_rich_style("pareto-plot--trial")
        front_style = self.get_component_rich_style("pareto-plot--front")
        best_style = self.get_component_rich_style("pareto-plot--best")

        def position(point: PlotPoint) -> tuple[int, int]:
            x = round(point.kl / kl_limit * (canvas.dot_columns - 1))
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
