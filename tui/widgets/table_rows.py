"""Refill a DataTable with rows whose columns are sized to them at once.

Textual measures auto-width columns only when the table next goes idle, and its row render cache is keyed without
the column widths: a frame drawn between the rows' arrival and that idle moment is kept, so the table can stay
cut to its header widths ("✔ fini", "0/10") until the cursor moves (Textual issue #1026; a CI run showed it on the
runs screen). Sizing each column to its widest cell before the rows are added, as one synchronous pass, gives every
frame the final widths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

Row = tuple[str, Sequence[Any]]
"""A row's key and its cells, in column order."""


def cell_width(cell: Any) -> int:
    """Width in terminal cells of a cell as DataTable draws it (strings are markup, floats get two decimals)."""
    if isinstance(cell, Text):
        return cell.cell_len
    if isinstance(cell, str):
        return max((Text.from_markup(line).cell_len for line in cell.splitlines() or [""]), default=0)
    if isinstance(cell, float):
        return len(f"{cell:.2f}")
    return len(str(cell))


def refill(table: DataTable[Any], rows: Sequence[Row]) -> None:
    """Replace the table's rows with ``rows``, every column as wide as its label or its widest cell."""
    table.clear()
    for position, column in enumerate(table.ordered_columns):
        widths = [cell_width(cells[position]) for _, cells in rows if position < len(cells)]
        column.width = max([column.label.cell_len, *widths])
        column.auto_width = False
    for key, cells in rows:
        table.add_row(*cells, key=key)
