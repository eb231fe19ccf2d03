"""Refusals against KL divergence for every trial, drawn with braille dots, the Pareto front marked.

No plotting library is installed on a typical GPU box's Python, and a scatter of a few hundred points needs none:
each character cell holds a 2x4 grid of braille dots, so an 40x10 cell plot resolves 80x40 positions. Trials on the
Pareto front get a full marker (they are the ones worth choosing between) and the best trial a star.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

BRAILLE_BASE = 0x2800
BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
"""Bit of each dot, indexed [row][column] within a character cell (Unicode braille patterns)."""

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
        cells, styles = self._draw(columns, rows, top, kl_limit)
        return self._assemble(cells, styles, columns, rows, label_width, top, kl_limit, axis)

    def _draw(
        self, columns: int, rows: int, top: int, kl_limit: float
    ) -> tuple[list[list[int | str]], list[list[Style | None]]]:
        dot_columns, dot_rows = columns * 2, rows * 4
        cells: list[list[int | str]] = [[0] * columns for _ in range(rows)]
        styles: list[list[Style | None]] = [[None] * columns for _ in range(rows)]
        trial_style = self.get_component_rich_style("pareto-plot--trial")
        front_style = self.get_component_rich_style("pareto-plot--front")
        best_style = self.get_component_rich_style("pareto-plot--best")

        def position(point: PlotPoint) -> tuple[int, int]:
            x = round(point.kl / kl_limit * (dot_columns - 1))
            y = round((1 - point.refusals / top) * (dot_rows - 1))
            return min(max(x, 0), dot_columns - 1), min(max(y, 0), dot_rows - 1)

        ordered = sorted(self.points, key=lambda point: (point.number == self.best, point.number in self.front))
        for point in ordered:
            x, y = position(point)
            row, column = y // 4, x // 2
            if point.number == self.best:
                cells[row][column], styles[row][column] = BEST_MARKER, best_style
            elif point.number in self.front:
                if cells[row][column] != BEST_MARKER:
                    cells[row][column], styles[row][column] = FRONT_MARKER, front_style
            else:
                current = cells[row][column]
                if isinstance(current, int):
                    cells[row][column] = current | BRAILLE_BITS[y % 4][x % 2]
                    styles[row][column] = trial_style
        if self.baseline is not None:
            baseline_row = min(rows - 1, round((1 - self.baseline / top) * (dot_rows - 1)) // 4)
            baseline_style = self.get_component_rich_style("pareto-plot--baseline")
            for column in range(columns):
                if cells[baseline_row][column] == 0:
                    cells[baseline_row][column], styles[baseline_row][column] = "┄", baseline_style
        return cells, styles

    @staticmethod
    def _assemble(
        cells: list[list[int | str]],
        styles: list[list[Style | None]],
        columns: int,
        rows: int,
        label_width: int,
        top: int,
        kl_limit: float,
        axis: Style,
    ) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        labels = {0: str(top), rows - 1: "0"}
        if rows >= 5:
            labels[(rows - 1) // 2] = str(round(top * (1 - ((rows - 1) // 2) / (rows - 1))))
        for row in range(rows):
            text.append(labels.get(row, "").rjust(label_width) + ("┤" if row in labels else "│"), style=axis)
            for column in range(columns):
                cell = cells[row][column]
                character = chr(BRAILLE_BASE + cell) if isinstance(cell, int) else cell
                if cell == 0:
                    character = " "
                text.append(character, style=styles[row][column] or "")
            text.append("\n")
        text.append(" " * label_width + "└" + "─" * columns + "\n", style=axis)
        left, right = "0", f"{kl_limit:.3g}"
        middle = " KL divergence → "
        gap = columns + 1 - len(left) - len(right)
        if gap >= len(middle):
            padding = gap - len(middle)
            line = left + " " * (padding // 2) + middle + " " * (padding - padding // 2) + right
        else:
            line = left + " " * max(1, gap) + right
        text.append(" " * label_width + line, style=axis)
        return text
