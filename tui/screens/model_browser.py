"""Local models and adapters (HF cache, model folders, run outputs, the demo) in a table, with a detail pane and
actions. An adapter can be uploaded and traced (lineage); abliteration, chat and fine-tuning take a full model (its
base model, or a merged export)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Static

from heretic_tui.core.api import ModelInfo, find_models, model_setting_for
from heretic_tui.core.settings import Settings
from heretic_tui.tui.formatting import (
    colored_text,
    escape_markup,
    format_bytes,
    format_parameter_count,
    format_timestamp,
    short_model_name,
)
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.widgets.table_rows import refill


ADAPTER_ACTIONS = ("actions", "upload", "lineage")
"""What can be done with an adapter folder itself (the others need a full model)."""


def describe_model_markup(model: ModelInfo) -> str:
    """The detail pane text; shared with the model actions screen."""
    lines = [f"[b]{escape_markup(model.name)}[/b]", ""]
    if model.is_adapter:
        lines += [
            f"Kind          {escape_markup(model.architecture or 'adapter')}",
            f"Base model    {escape_markup(model.base_model or '?')}",
        ]
    else:
        lines.append(f"Architecture  {escape_markup(model.architecture or '?')}"
                     + (f" ({escape_markup(model.model_type)})" if model.model_type else ""))
    lines += [
        f"Parameters    {format_parameter_count(model.parameter_count)}",
        f"Dtype         {escape_markup(model.dtype or '?')}"
        + (f" · quantized ({escape_markup(model.quantization)})" if model.quantization else ""),
        f"Size on disk  {format_bytes(model.size_bytes)}",
    ]
    if model.is_adapter:
        lines.append("[$text-muted]An adapter loads on top of its base model: upload it, or export a merged model "
                     "to chat with, abliterate or fine-tune.[/]")
    else:
        lines.append(f"Chat template {'yes' if model.has_chat_template else '[$error]no[/] (abliteration needs one)'}")
    lines += [
        f"Modified      {format_timestamp(model.modified)}",
        f"Found in      {model.source}",
    ]
    if not model.has_weights:
        lines.append("[$warning]No weight files found (incomplete download?)[/]")
    lines += ["", f"[$text-muted]{escape_markup(str(model.path))}[/]"]
    return "\n".join(lines)


class ModelBrowserScreen(HereticScreen[None]):
    """Enter opens the actions of the highlighted model; a/c start them directly."""

    BINDINGS = [
        Binding("enter", "actions", "Actions", show=False),
        Binding("a", "abliterate", "Abliterate"),
        Binding("c", "chat", "Chat"),
        Binding("f", "finetune", "Fine-tune"),
        Binding("u", "upload", "Upload"),
        Binding("l", "lineage", "Lineage"),
        Binding("g", "rescan", "Rescan"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, ModelInfo] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="browser"):
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            yield Static("Scanning…", id="model-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "models"
        table = self.query_one("#models-table", DataTable)
        table.border_title = "Local models"
        for key, label in (("name", "Name"), ("architecture", "Architecture"), ("parameters", "Params"),
                           ("dtype", "Dtype"), ("size", "Size"), ("template", "Chat"), ("modified", "Modified"),
                           ("source", "Source")):
            table.add_column(label, key=key)
        self.query_one("#model-detail").border_title = "Details"
        self.action_rescan()

    def action_rescan(self) -> None:
        self.query_one("#models-table", DataTable).border_subtitle = "scanning…"
        self._scan(self.heretic.settings)

    @work(thread=True, group="scan", exclusive=True, exit_on_error=False)
    def _scan(self, settings: Settings) -> None:
        try:
            models = find_models(settings)
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            self.app.call_from_thread(self.heretic.show_error, "The model scan failed", message)
            models = []
        self.app.call_from_thread(self._show, models)

    def _show(self, models: list[ModelInfo]) -> None:
        table = self.query_one("#models-table", DataTable)
        self.models = {str(model.path): model for model in models}
        refill(table, [(str(model.path), (
            escape_markup(model.name),
            escape_markup(f"adapter on {short_model_name(model.base_model or '?')}" if model.is_adapter
                          else (model.architecture or "?").removesuffix("ForCausalLM")),
            format_parameter_count(model.parameter_count),
            escape_markup(model.dtype or "?"),
            format_bytes(model.size_bytes),
            "–" if model.is_adapter else "yes" if model.has_chat_template
            else colored_text("no", self.app.theme_variables, "error"),
            format_timestamp(model.modified, compact=True),
            model.source,
        )) for model in models])
        table.border_subtitle = f"{len(models)} found"
        detail = self.query_one("#model-detail", Static)
        if models:
            detail.update(describe_model_markup(models[0]))
        else:
            detail.update(
                "No local models found.\n\nThe browser looks in the Hugging Face cache, the folders listed in "
                "output.model_directories, and the outputs of earlier runs (exports and adapters). The built-in demo model appears once "
                "it has been built (start a run with model 'demo')."
            )
        self.refresh_bindings()

    @property
    def selected(self) -> ModelInfo | None:
        table = self.query_one("#models-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.models.get(key or "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        model = self.models.get(event.row_key.value or "")
        if model is not None:
            self.query_one("#model-detail", Static).update(describe_model_markup(model))
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_actions()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("actions", "abliterate", "chat", "finetune", "upload", "lineage"):
            selected = self.selected if self.is_mounted else None
            return selected is not None and (not selected.is_adapter or action in ADAPTER_ACTIONS)
        return True

    def action_actions(self) -> None:
        if self.selected is not None:
            self.heretic.open_model_actions(self.selected.path, model=self.selected)

    def action_abliterate(self) -> None:
        if self.selected is not None:
            self.heretic.open_wizard(model=model_setting_for(self.selected))

    def action_chat(self) -> None:
        if self.selected is not None:
            self.heretic.open_chat_with(model_setting_for(self.selected))

    def action_finetune(self) -> None:
        if self.selected is not None:
            self.heretic.open_finetune_wizard(model=model_setting_for(self.selected))

    def action_upload(self) -> None:
        if self.selected is not None:
            self.heretic.open_upload(self.selected.path)

    def action_lineage(self) -> None:
        if self.selected is not None:
            self.heretic.open_lineage(self.selected.path)

    def action_back(self) -> None:
        self.dismiss()
