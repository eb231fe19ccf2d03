"""A refilled table has its final column widths before it is drawn again, so no frame keeps cut cells."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from heretic_tui.tui.widgets.table_rows import cell_width, refill

pytestmark = pytest.mark.anyio


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Status", key="status")
        table.add_column("Best", key="best")


def test_cell_widths_read_markup_text_and_numbers_as_drawn() -> None:
    assert cell_width("[b]bold[/b]") == 4
    assert cell_width(Text("✔ finished")) == 10
    assert cell_width(0.123456) == 4
    assert cell_width(12) == 2


async def test_columns_are_as_wide_as_their_widest_cell_before_the_table_goes_idle() -> None:
    app = TableApp()
    async with app.run_test(size=(100, 10)):
        table: DataTable[Any] = app.query_one(DataTable)
        refill(table, [("a", (Text("✔ finished"), "0/100 KL 0.004")), ("b", ("? missing", "–"))])
        widths = {str(column.key.value): column.width for column in table.ordered_columns}
        assert widths == {"status": 10, "best": 14}
        assert table.row_count == 2
        refill(table, [("c", ("ok", "x"))])
        assert [column.width for column in table.ordered_columns] == [6, 4], "a column shrinks back to its label"
        assert table.get_row("c") == ["ok", "x"]
