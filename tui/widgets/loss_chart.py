"""Training and validation loss over the optimizer steps of a fine-tuning run, drawn with braille dots.

Train loss is logged every few steps, so it is a dotted curve through the logged values; validation loss is
measured at checkpoints only, so each value is a full marker that stands out from the curve. The x axis spans the planned
steps (not the steps so far), so the chart also shows how much of the run is left.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from heretic_tui.tui.widgets.braille import BrailleCanvas, assemble_plot

EVAL_MARKER = "●"


@dataclass(frozen=True)
class LossPoint:
    step: int
    loss: float


def format_loss(value: float) -> str:
    return f"{value:.3g}"


class LossChart(Widget):
    """Call :meth:`set_losses` with the train and eval points and the planned number of steps."""

    COMPONENT_CLASSES = {"loss-chart--axis", "loss-chart--train", "loss-chart--eval"}

    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        min-height: 6;
    }
    LossChart > .loss-chart--axis { color: $text-muted; }
    LossChart > .loss-chart--train { color: $primary; }
    LossChart > .loss-chart--eval { color: $warning; text-style: bold; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.train: list[LossPoint] = []
        self.evaluation: list[LossPoint] = []
        self.total_steps = 0

    def set_losses(self, train: list[LossPoint], evaluation: list[LossPoint], total_steps: int) -> None:
        self.train = train
        self.evaluation = evaluation
        self.total_steps = total_steps
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        axis = self.get_component_rich_style("loss-chart--axis")
        points = self.train + self.evaluation
        if not points:
            return Text("No loss logged yet.\nTrain loss appears as dots and validation\nloss as ● once the "
                        "first steps are done.", style=axis)
        highest = max(point.loss for point in points)
        lowest = min(point.loss for point in points)
        if highest - lowest < 1e-9:
            highest, lowest = highest + 0.5, max(0.0, lowest - 0.5)
        last_step = max([self.total_steps, *(point.step for point in points)]) or 1
        rows = max(2, height - 2)
        labels = {0: format_loss(highest), rows - 1: format_loss(lowest)}
        if rows >= 5:
            middle = (rows - 1) // 2
            labels[middle] = format_loss(highest - (highest - lowest) * middle / (rows - 1))
        label_width = max(len(label) for label in labels.values())
        canvas = BrailleCanvas(max(4, width - label_width - 1), rows)

        def position(point: LossPoint) -> tuple[int, int]:
            x = round(point.step / last_step * (canvas.dot_columns - 1))
            y = round((highest - point.loss) / (highest - lowest) * (canvas.dot_rows - 1))
            return x, y

        train_style = self.get_component_rich_style("loss-chart--train")
        previous: tuple[int, int] | None = None
        for point in self.train:
            x, y = position(point)
            if previous is None:
                canvas.dot(x, y, train_style)
            else:
                self._line(canvas, previous, (x, y), train_style)
            previous = (x, y)
        eval_style = self.get_component_rich_style("loss-chart--eval")
        for point in self.evaluation:
            x, y = position(point)
            x = min(max(x, 0), canvas.dot_columns - 1)
            y = min(max(y, 0), canvas.dot_rows - 1)
            canvas.mark(x // 2, y // 4, EVAL_MARKER, eval_style)
        return assemble_plot(canvas, labels, label_width, "0", str(last_step), " step → ", axis)

    @staticmethod
    def _line(canvas: BrailleCanvas, start: tuple[int, int], end: tuple[int, int], style: Style) -> None:
        """Dots from one logged step to the next, so the train loss reads as a curve rather than scattered points."""
        (x0, y0), (x1, y1) = start, end
        count = max(abs(x1 - x0), abs(y1 - y0), 1)
        for index in range(1, count + 1):
            canvas.dot(round(x0 + (x1 - x0) * index / count), round(y0 + (y1 - y0) * index / count), style)
