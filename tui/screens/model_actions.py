"""What can be done with one model folder: what ``heretic-tui ./model`` opens, and Enter in the model browser."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from heretic_tui.core.api import ModelInfo, describe_model, model_setting_for
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.screens.model_browser import ADAPTER_ACTIONS, describe_model_markup

MODEL_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("abliterate", "a", "Abliterate: remove refusals (wizard)"),
    ("chat", "c", "Chat with this model"),
    ("finetune", "f", "Fine-tune this model on your data (wizard)"),
    ("upload", "u", "Upload to the Hugging Face Hub"),
    ("lineage", "l", "Lineage: base → abliterated → fine-tuned"),
)


class ModelActionsScreen(HereticScreen[None]):
    """The model's description (read from its files, no weights loaded) and its actions."""

    BINDINGS = [
        Binding("a", "abliterate", "Abliterate"),
        Binding("c", "chat", "Chat"),
        Binding("f", "finetune", "Fine-tune"),
        Binding("u", "upload", "Upload"),
        Binding("l", "lineage", "Lineage"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, folder: Path, model: ModelInfo | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.model = model

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="model-actions"):
            yield Static("Reading the model's files…", id="model-info")
            yield OptionList(
                *[Option(f"[b]{key}[/b]  {label}", id=action) for action, key, label in MODEL_ACTIONS],
                id="model-action-list",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.folder.name
        self.query_one("#model-info").border_title = "Model"
        self.query_one("#model-action-list").border_title = "Actions"
        self.query_one("#model-action-list").focus()
        if self.model is not None:
            self._show(self.model)
        else:
            self._describe(self.folder)

    @work(thread=True, group="describe", exclusive=True, exit_on_error=False)
    def _describe(self, folder: Path) -> None:
        model = describe_model(folder)
        self.app.call_from_thread(self._show, model)

    def _show(self, model: ModelInfo) -> None:
        self.model = model
        self.query_one("#model-info", Static).update(describe_model_markup(model))
        if model.is_adapter:
            actions = self.query_one("#model-action-list", OptionList)
            for action, _, _ in MODEL_ACTIONS:
                if action not in ADAPTER_ACTIONS:
                    actions.disable_option(action)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.model is not None and self.model.is_adapter and action in {name for name, _, _ in MODEL_ACTIONS}:
            return action in ADAPTER_ACTIONS
        return True

    @property
    def model_setting(self) -> str:
        return model_setting_for(self.model) if self.model is not None else str(self.folder)

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter (or a click) on an action runs it, like its key."""
        event.stop()
        if event.option.id:
            await self.run_action(event.option.id)

    def action_abliterate(self) -> None:
        self.heretic.open_wizard(model=self.model_setting)

    def action_chat(self) -> None:
        self.heretic.open_chat_with(self.model_setting)

    def action_finetune(self) -> None:
        self.heretic.open_finetune_wizard(model=self.model_setting)

    def action_upload(self) -> None:
        self.heretic.open_upload(self.folder)

    def action_lineage(self) -> None:
        self.heretic.open_lineage(self.folder)

    def action_back(self) -> None:
        self.dismiss()
