"""Where a model came from and what was made from it: base → abliterated → fine-tuned, from the registry.

The registry is an index that can lag behind the run folders (runs recorded while it was locked, folders copied
in), so the view first re-indexes the runs folder and the model folders (``Registry.rebuild``, which only reads
folders before a short write) in a thread, then reads the chain and the children. A folder that is gone shows as
missing rather than as an error.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from heretic_tui.core.api import STATUS_MISSING, ModelRecord, Registry, runs_root
from heretic_tui.tui.formatting import escape_markup, format_timestamp
from heretic_tui.tui.screens.base import HereticScreen

ROLE_COLORS: dict[str, str] = {"base": "$text", "abliterated": "$warning", "fine-tuned": "$success"}


def model_line(model: ModelRecord, selected: bool) -> str:
    """One model: its name and role, then where it came from (run, trial) and whether its folder is there."""
    color = ROLE_COLORS.get(model.role, "$text")
    name = f"[b]{escape_markup(model.name)}[/b]" + ("  [$accent]◀ this model[/]" if selected else "")
    facts = [f"[{color}]{model.role}[/]"]
    if model.method:
        facts.append(escape_markup(model.method))
    if model.run_path:
        facts.append(f"run {escape_markup(Path(model.run_path).name)}")
    if model.trial is not None:
        facts.append(f"trial {model.trial}")
    if model.created:
        facts.append(format_timestamp(model.created))
    status = f"[$error]{model.status}[/]" if model.status == STATUS_MISSING else f"[$text-muted]{model.status}[/]"
    facts.append(status)
    return f"{name}\n    {' · '.join(facts)}\n    [$text-muted]{escape_markup(model.path)}[/]"


def lineage_markup(chain: list[ModelRecord], children: list[ModelRecord], selected: str) -> str:
    if not chain:
        return ("This model is not in the registry: no run produced it and it is not the base of one.\n\n"
                "Models appear here once a run or an export writes them (or after `heretic-tui registry rebuild`).")
    lines = ["[b]Lineage[/b] (oldest first)", ""]
    for depth, model in enumerate(chain):
        indent = "    " * depth
        arrow = "" if depth == 0 else "└─▶ "
        body = model_line(model, model.path == selected).replace("\n", "\n" + indent + "    " * bool(depth))
        lines.append(indent + arrow + body)
    if children:
        lines += ["", f"[b]Made from this model[/b] ({len(children)})", ""]
        for child in children:
            lines.append("  ▸ " + model_line(child, False).replace("\n", "\n  "))
    return "\n".join(lines)


class LineageScreen(HereticScreen[None]):
    """The chain of one model folder (or hub id) and the models made directly from it."""

    BINDINGS = [
        Binding("g", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, model_path: Path) -> None:
        super().__init__()
        self.model_path = model_path
        self.chain: list[ModelRecord] = []
        self.children_models: list[ModelRecord] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Reading the registry…", id="lineage-view")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"lineage · {self.model_path.name}"
        self.query_one("#lineage-view").border_title = "Lineage"
        self.action_refresh()

    def action_refresh(self) -> None:
        settings = self.heretic.settings
        directories = [Path(folder) for folder in settings.output.model_directories]
        self._load(self.heretic.registry(), runs_root(settings), directories)

    @work(thread=True, group="lineage", exclusive=True, exit_on_error=False)
    def _load(self, registry: Registry, root: Path, directories: list[Path]) -> None:
        try:
            registry.rebuild(root, directories)
            chain = registry.lineage(self.model_path)
            last = chain[-1].path if chain else str(self.model_path)
            children = registry.children(last)
        except Exception as error:
            self.app.call_from_thread(self.heretic.show_error, "The registry could not be read",
                                      f"{type(error).__name__}: {error}")
            return
        self.app.call_from_thread(self._show, chain, children)

    def _show(self, chain: list[ModelRecord], children: list[ModelRecord]) -> None:
        self.chain = chain
        self.children_models = children
        selected = chain[-1].path if chain else ""
        self.query_one("#lineage-view", Static).update(lineage_markup(chain, children, selected))

    def action_back(self) -> None:
        self.dismiss()
