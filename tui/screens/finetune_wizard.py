"""The fine-tune wizard: basic (model, data, preset, output) or advanced (every model, fine-tuning and output
setting), then a summary to save and start.

It is the abliteration wizard with other questions: the steps, the inline validation, the summary and the config
saving are inherited, so both wizards behave the same and build their :class:`Settings` through the core's
``settings_from_dict``. Starting runs the core's preflight (model, lengths, target modules, data) in a thread and
shows its refusal as a modal; a run that starts replaces the wizard with its dashboard.
"""

from __future__ import annotations

import copy

from textual.app import ComposeResult
from textual.widgets import Input, Select, Static

from heretic_tui.core.api import runs_root
from heretic_tui.core.settings import Settings
from heretic_tui.tui.field_checks import describe_data_choice
from heretic_tui.tui.finetune_choices import (
    CUSTOM,
    FINETUNE_PRESETS,
    basic_overrides,
    data_entries,
    preset_of,
)
from heretic_tui.tui.formatting import escape_markup
from heretic_tui.tui.screens.wizard import WizardScreen


class FinetuneWizardScreen(WizardScreen):
    """Steps: mode → basic or advanced → summary; ``model`` prefills the model (a trial export, a browsed model)."""

    INTRO = (
        "[b]New fine-tuning run[/b]\n\nTeaches a model your documents or chat data with a LoRA adapter: the data is "
        "read and split, the model is measured before and after (validation loss, a knowledge test), and the "
        "adapter (and optionally a merged model) is written to the run folder. It runs in the background: you can "
        "quit and come back.\n"
    )
    BASIC_LABEL = "Basic: model, data, preset, output (b)"
    SUBTITLE = "fine-tune"
    FORM_SECTIONS = ("model", "finetune", "output")
    SUMMARY_SKIPS = ("finetune.training_data",)

    def __init__(self, base: Settings, model: str | None = None) -> None:
        super().__init__(base, model=model)
        self.finetune_preset = preset_of(self.values)

    def _data_text(self) -> str:
        return ", ".join(self.values["finetune.training_data"])

    def _compose_basic(self) -> ComposeResult:
        yield Static("[b]1. Model[/b]  a local folder (e.g. an exported trial), a hub id (owner/name) or 'demo'",
                     classes="question")
        yield Input(value=str(self.values["model.model"]), id="basic-model")
        yield Static("", id="basic-model-hint", classes="hint")
        yield Static("[b]2. Training data[/b]  files or folders, separated by commas (PDF, .txt, .md, JSONL chat or "
                     "instruction data)", classes="question")
        yield Input(value=self._data_text(), placeholder="/path/to/documents, /path/to/chats.jsonl", id="basic-data")
        yield Static("", id="basic-data-hint", classes="hint")
        yield Static("[b]3. Preset[/b]  how long and how hard to train", classes="question")
        options = [(label, key) for key, (label, _) in FINETUNE_PRESETS.items()]
        options.append(("Keep epochs, rank and learning rate from the config or the advanced form", CUSTOM))
        yield Select(options, value=self.finetune_preset, allow_blank=False, id="basic-preset")
        yield Static("[b]4. Output folder[/b]  one sub-folder per run (adapter, merged model, report); empty means "
                     "the default", classes="question")
        yield Input(value=str(self.values["output.runs_directory"]), placeholder=str(runs_root(Settings())),
                    id="basic-output")
        yield Static("[$text-muted]Everything else keeps its default. Press ctrl+n for the summary, or choose "
                     "Advanced from the start to see every setting.[/]", classes="hint")

    def on_mount(self) -> None:
        super().on_mount()
        self._update_data_hint(self._data_text())

    def _sync_basic(self) -> None:
        self.finetune_preset = preset_of(self.values)
        with self.prevent(Input.Changed, Select.Changed):
            self.query_one("#basic-model", Input).value = str(self.values["model.model"])
            self.query_one("#basic-data", Input).value = self._data_text()
            self.query_one("#basic-output", Input).value = str(self.values["output.runs_directory"])
            self.query_one("#basic-preset", Select).value = self.finetune_preset
        self._update_model_hint(str(self.values["model.model"]))
        self._update_data_hint(self._data_text())

    def _update_data_hint(self, text: str) -> None:
        self._show_hint("data", *describe_data_choice(text))

    def basic_answer(self, field: str, text: str) -> bool:
        if field != "basic-data":
            return False
        self.values["finetune.training_data"] = data_entries(text)
        self._update_data_hint(text)
        return True

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.select.id != "basic-preset":
            return
        self.finetune_preset = str(event.value)
        self._apply_basic_choices()

    def _apply_basic_choices(self) -> None:
        overrides = basic_overrides(
            str(self.values["model.model"]),
            list(self.values["finetune.training_data"]),
            self.finetune_preset,
            str(self.values["output.runs_directory"]),
        )
        self.values.update(copy.deepcopy(overrides))

    def _summary_markup(self, settings: Settings) -> str:
        changed = self.changed_settings(settings)
        finetune = settings.finetune
        length = f"{finetune.max_steps} steps" if finetune.max_steps else f"{finetune.epochs:g} epochs"
        lines = [
            "[b]Summary[/b]",
            "",
            f"Model       {escape_markup(settings.model.model)}",
            "Data        " + escape_markup("\n            ".join(finetune.training_data) or "(none)"),
            f"Training    {length} · LoRA rank {finetune.lora_rank} · learning rate {finetune.learning_rate:g} · "
            f"mode {finetune.training_mode}",
            f"Outputs     adapter{' + merged model' if finetune.merge_adapter else ''} in a run folder under "
            f"{escape_markup(str(runs_root(settings)))}",
            "",
            "[b]Settings that differ from the defaults[/b]" if changed else "All other settings are defaults.",
            *changed,
            "",
            "[$text-muted]Start checks the model, lengths, target modules and data first (seconds), then opens the "
            "dashboard.[/]",
        ]
        return "\n".join(lines)

    starting_message = "Checking the model and the training data…"

    def start_run(self, settings: Settings) -> None:
        self.heretic.start_finetune_run(settings)

