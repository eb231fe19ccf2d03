"""Drawing with braille dots in a character grid, and the axes around it: shared by every plot on the dashboard.

Each character cell holds a 2x4 grid of braille dots, so a 40x10 cell plot resolves 80x40 positions. A
:class:`BrailleCanvas` collects dots and whole marker characters; :func:`assemble_plot` puts labels and axes around
it and returns Rich text for ``render``.

Hand-written on purpose: the two charts need dots, whole-character markers (the Pareto front, the best trial, the
validation losses) in theme colours, and two labelled axes. A terminal plotting library (plotext, and
textual-plotext around it) would be a new dependency for about eighty lines, draws its own colours and markers
rather than the theme's component classes, and renders through its own canvas rather than a Rich ``Text`` that
snapshot tests compare cell by cell.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

BRAILLE_BASE = 0x2800
BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
"""Bit of each dot, indexed [row][column] within a character cell (Unicode braille patterns)."""


class BrailleCanvas:
    """A ``columns`` x ``rows`` grid of cells; dots are addressed in dot units (2 per column, 4 per row)."""

    def __init__(self, columns: int, rows: int) -> None:
        self.columns = columns
        self.rows = rows
        self.cells: list[list[int | str]] = [[0] * columns for _ in range(rows)]
        self.styles: list[list[Style | None]] = [[None] * columns for _ in range(rows)]

    @property
    def dot_columns(self) -> int:
        return self.columns * 2

    @property
    def dot_rows(self) -> int:
        return self.rows * 4

    def dot(self, x: int, y: int, style: Style) -> None:
        """Set one dot; a cell holding a marker character keeps it (markers outrank dots)."""
        x = min(max(x, 0), self.dot_columns - 1)
        y = min(max(y, 0), self.dot_rows - 1)
        row, column = y // 4, x // 2
        current = self.cells[row][column]
        if isinstance(current, int):
            self.cells[row][column] = current | BRAILLE_BITS[y % 4][x % 2]
            self.styles[row][column] = style

    def mark(self, column: int, row: int, character: str, style: Style) -> None:
        """Put a whole character (a marker, a line segment) into a cell."""
        self.cells[row][column] = character
        self.styles[row][column] = style

    def is_empty(self, column: int, row: int) -> bool:
        return self.cells[row][column] == 0


def assemble_plot(
    canvas: BrailleCanvas,
    labels: dict[int, str],
    label_width: int,
    left: str,
    right: str,
    title: str,
    axis: Style,
) -> Text:
    """The canvas with a y axis (``labels`` by row), an x axis, and ``left`` … ``title`` … ``right`` below it."""
    text = Text(no_wrap=True, overflow="crop")
    for row in range(canvas.rows):
        text.append(labels.get(row, "").rjust(label_width) + ("┤" if row in labels else "│"), style=axis)
        for column in range(canvas.columns):
            cell = canvas.cells[row][column]
            character = chr(BRAILLE_BASE + cell) if isinstance(cell, int) else cell
            if cell == 0:
                character = " "
            text.append(character, style=canvas.styles[row][column] or "")
        text.append("\n")
    text.append(" " * label_width + "└" + "─" * canvas.columns + "\n", style=axis)
    gap = canvas.columns + 1 - len(left) - len(right)
    if gap >= len(title):
        padding = gap - len(title)
        line = left + " " * (padding // 2) + title + " " * (padding - padding // 2) + right
    else:
        line = left + " " * max(1, gap) + right
    text.append(" " * label_width + line, style=axis)
    return text
