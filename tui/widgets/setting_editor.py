"""One setting as a form field: name, help, default, the right input for its type, and the core's validation.

The advanced wizard is built from :func:`heretic_tui.core.settings.setting_fields`, so a new setting in the core appears here
with its help text and limits without touching the TUI. Every change is checked with the core's own
``parse_text_value`` and ``validate_value``: a value the core would reject shows its message inline and cannot be
submitted.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import SettingField, describe_type, parse_text_value, validate_value
from heretic_tui.tui.formatting import escape_markup


def value_to_text(value: Any) -> str:
    """How a value is written in a text field; lists are comma-separated unless an item holds a comma."""
    if isinstance(value, list):
        if any("," in str(item) for item in value):
            return "[" + ", ".join(repr(str(item)).replace("'", '"') for item in value) + "]"
        return ", ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field(spec: SettingField, text: str) -> Any:
    """Text from a field to a valid value, or UserInputError with the core's message."""
    return validate_value(spec, parse_text_value(spec, text, "Wizard"), "Wizard")


def widget_id(spec: SettingField) -> str:
    return f"setting-{spec.section}-{spec.name}"


class SettingEditor(Vertical):
    """Edits one setting; posts :class:`SettingEditor.Changed` with the parsed value or the error."""

    class Changed(Message):
        def __init__(self, editor: SettingEditor, value: Any, error: str | None) -> None:
            super().__init__()
            self.editor = editor
            self.value = value
            self.error = error

        @property
        def key(self) -> str:
            return self.editor.spec.key

    def __init__(self, spec: SettingField, value: Any) -> None:
        super().__init__(classes="setting-editor", id=f"editor-{spec.section}-{spec.name}")
        self.spec = spec
        self.initial = value

    def compose(self) -> ComposeResult:
        spec = self.spec
        yield Label(f"[b]{spec.name}[/b]  [$text-muted]{escape_markup(describe_type(spec))}[/]", classes="setting-name")
        yield Static(
            f"{escape_markup(spec.help)}\n[$text-muted]default: "
            f"{escape_markup(value_to_text(spec.default)) or '(empty)'}"
            f"  ·  env {spec.environment_variable}[/]",
            classes="setting-help",
        )
        if spec.type is bool:
            yield Switch(value=bool(self.initial), id=widget_id(spec))
        elif spec.type is str and spec.choices:
            yield Select(
                [(choice, choice) for choice in spec.choices],
                value=self.initial,
                allow_blank=False,
                id=widget_id(spec),
                compact=True,
            )
        else:
            yield Input(value=value_to_text(self.initial), password=spec.secret, id=widget_id(spec), compact=True)
        yield Static("", classes="field-error")

    def set_value(self, value: Any) -> None:
        """Show a value set elsewhere (the basic form) without posting a change back."""
        field = self.query_one(f"#{widget_id(self.spec)}")
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed):
            if isinstance(field, Switch):
                field.value = bool(value)
            elif isinstance(field, Select):
                field.value = value
            elif isinstance(field, Input):
                field.value = value_to_text(value)
        self._show_error(None)

    def _show_error(self, error: str | None) -> None:
        self.query_one(".field-error", Static).update(escape_markup(error or ""))
        self.set_class(error is not None, "-invalid")

    def _changed(self, value: Any, error: str | None) -> None:
        self._show_error(error)
        self.post_message(self.Changed(self, value, error))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        try:
            value = parse_field(self.spec, event.value)
        except UserInputError as error:
            self._changed(None, str(error).removeprefix("Wizard: "))
            return
        self._changed(value, None)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._changed(event.value, None)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is Select.NULL:
            return
        self._changed(event.value, None)
