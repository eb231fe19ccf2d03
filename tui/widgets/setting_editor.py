"""One setting as a form field: name, help, default, the right input for its type, and the core's validation.

The advanced wizard is built from :func:`heretic_tui.core.settings.setting_fields`, so a new setting in the core appears here
with its help text and limits without touching the TUI. Every change is checked with the core's own
``parse_text_value`` and ``validate_value``: a value the core would reject shows its message inline and cannot be
submitted. A setting with a check of its own (a model path, training data) shows that check's hint under the field
as it is typed, and a failing check blocks the summary the same way.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def __init__(self, spec: SettingField, value: Any,
                 check: Callable[[Any], tuple[str, bool]] | None = None) -> None:
        super().__init__(classes="setting-editor", id=f"editor-{spec.section}-{spec.name}")
        self.spec = spec
        self.initial = value
        self.check = check

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
        if self.check is not None:
            yield Static("", classes="hint setting-check")

    def on_mount(self) -> None:
        if self.check is not None:
            self._changed(self.initial, None)

    @property
    def field(self) -> Input | Switch | Select[Any]:
        """The widget that takes the value (what gets focus)."""
        return self.query_one(f"#{widget_id(self.spec)}")  # type: ignore[return-value]

    def set_value(self, value: Any) -> str | None:
        """Show a value set elsewhere (the basic form) without posting a change back; returns what the setting's
        own check finds wrong with it, if anything."""
        field = self.field
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed):
            if isinstance(field, Switch):
                field.value = bool(value)
            elif isinstance(field, Select):
                field.value = value
            elif isinstance(field, Input):
                field.value = value_to_text(value)
        self._show_error(None)
        return self._show_check(value) if self.check is not None else None

    def _show_check(self, value: Any) -> str | None:
        """Run the setting's own check on a parsed value and show its hint; returns the problem, if any."""
        assert self.check is not None
        hint, valid = self.check(value)
        widget = self.query_one(".setting-check", Static)
        widget.update(escape_markup(hint))
        widget.set_class(not valid, "-error")
        self.set_class(not valid, "-invalid")
        return None if valid else hint

    def _show_error(self, error: str | None) -> None:
        self.query_one(".field-error", Static).update(escape_markup(error or ""))
        self.set_class(error is not None, "-invalid")

    def _changed(self, value: Any, error: str | None) -> None:
        self._show_error(error)
        if error is None and self.check is not None:
            error = self._show_check(value)
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
