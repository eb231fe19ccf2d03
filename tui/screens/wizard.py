"""The new-run wizard: basic (five questions) or advanced (every setting), then a summary to save and start.

Both modes edit one set of values (``section.name`` → typed value) that starts from the app's settings (config
file and environment), so switching from basic to advanced keeps the answers, and the run starts with exactly
the :class:`Settings` the summary shows. The settings are built by the core's ``settings_from_dict``: the
wizard cannot produce a combination the core would refuse.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, ContentSwitcher, Footer, Header, Input, Label, Select, Static

from heretic_tui.core.errors import HereticError, UserInputError
from heretic_tui.core.api import KIND_HUB, Plan, parse_model_reference, plan_lines, plan_model, random_trial_count, \
    runs_root
from heretic_tui.core.settings import (
    Settings,
    save_config,
    setting_fields,
    settings_from_dict,
    settings_to_dict,
)
from heretic_tui.tui.field_checks import describe_model_choice
from heretic_tui.tui.formatting import escape_markup
from heretic_tui.tui.screens.base import HereticScreen, failure_message
from heretic_tui.tui.screens.dialogs import MessageDialog
from heretic_tui.tui.widgets.setting_editor import SettingEditor, parse_field, value_to_text
from heretic_tui.tui.widgets.setting_form import section_title_id, setting_form
from heretic_tui.tui.wizard_choices import (
    CUSTOM,
    PRECISIONS,
    PROMPT_PRESETS,
    basic_overrides,
    precision_of,
    prompt_preset_of,
)

STEPS = ("mode", "basic", "advanced", "summary")


def search_plan(settings: Settings) -> str:
    """How the study will sample, in the core's own count: ``13 random, then TPE``."""
    random_trials = random_trial_count(settings.optimization)
    if random_trials >= settings.optimization.trials:
        return "all random"
    return f"{random_trials} random, then TPE"


class WizardScreen(HereticScreen[None]):
    """Steps: mode → basic or advanced → summary. Escape goes one step back (and out of the wizard)."""

    BINDINGS = [
        Binding("b", "choose('basic')", "Basic"),
        Binding("a", "choose('advanced')", "Advanced"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next", priority=True),
        Binding("ctrl+s", "save", "Save config", priority=True),
        Binding("ctrl+r", "start", "Start run", priority=True),
        Binding("ctrl+down", "jump_section(1)", "Next section"),
        Binding("ctrl+up", "jump_section(-1)", "Previous section"),
    ]

    INTRO = (
        "[b]New abliteration run[/b]\n\nThe run finds the model's refusal direction, then an Optuna search weighs "
        "fewer refusals against staying close to the original (KL divergence). It runs in the background: you can "
        "quit and come back.\n"
    )
    BASIC_LABEL = "Basic: five questions, safe defaults (b)"
    SUBTITLE = "new run"
    """Subclasses (the fine-tune wizard) change the words; the steps, validation and summary stay the same."""
    FORM_SECTIONS: tuple[str, ...] = ("model", "prompts", "abliteration", "optimization", "output")
    """The settings sections the job reads: the advanced form and the summary show only these."""
    SUMMARY_SKIPS: tuple[str, ...] = ()
    """Settings the summary already shows on a line of their own, left out of its list of changes."""

    def __init__(self, base: Settings, model: str | None = None) -> None:
        super().__init__()
        self.values: dict[str, Any] = {
            spec.key: copy.deepcopy(getattr(getattr(base, spec.section), spec.name)) for spec in setting_fields()
        }
        if model is not None:
            self.values["model.model"] = model
        self.errors: dict[str, str] = {}
        self.plan_offers: list[Any] = []
        """The plan's offers that change a setting, in the order of their buttons."""
        self.mode = "basic"
        self.step = "mode"
        self.basic_preset = prompt_preset_of(self.values)
        self.basic_precision = precision_of(self.values)

    def compose(self) -> ComposeResult:
        yield Header()
        with ContentSwitcher(initial="mode", id="wizard-steps"):
            with Vertical(id="mode", classes="wizard-step"):
                yield Static(self.INTRO, classes="wizard-intro")
                yield Button(self.BASIC_LABEL, id="choose-basic", variant="primary")
                yield Button("Advanced: every setting with its help (a)", id="choose-advanced")
            with VerticalScroll(id="basic", classes="wizard-step"):
                yield from self._compose_basic()
            yield VerticalScroll(id="advanced", classes="wizard-step")
            with VerticalScroll(id="summary", classes="wizard-step"):
                yield Static("", id="summary-text")
                yield Label("Save these settings to (comments kept, the old file kept as .bak):")
                yield Input(id="config-path")
                with Horizontal(classes="wizard-buttons"):
                    yield Button("Save config (ctrl+s)", id="save", compact=True)
                    yield Button("Start run (ctrl+r)", id="start", variant="success", compact=True)
                yield Static("", id="summary-plan")
                yield Horizontal(id="plan-offers", classes="wizard-buttons")
        with Horizontal(id="wizard-nav"):
            yield Static("", id="wizard-status")
            yield Button("Back (esc)", id="back", compact=True)
            yield Button("Next (ctrl+n)", id="next", variant="primary", compact=True)
        yield Footer()

    def _compose_basic(self) -> ComposeResult:
        yield Static("[b]1. Model[/b]  a local folder, a hub id (owner/name) or 'demo'", classes="question")
        yield Input(value=str(self.values["model.model"]), id="basic-model")
        yield Static("", id="basic-model-hint", classes="hint")
        yield Static("[b]2. Prompts[/b]  what finds the refusal direction and scores each trial", classes="question")
        preset_options = [(label, key) for key, (label, _) in PROMPT_PRESETS.items()]
        preset_options.append(("Keep the sources set in the config or the advanced form", CUSTOM))
        yield Select(preset_options, value=self.basic_preset, allow_blank=False, id="basic-prompts")
        yield Static("[b]3. Trials[/b]  more trials find better trade-offs; each takes seconds to minutes",
                     classes="question")
        yield Input(value=str(self.values["optimization.trials"]), id="basic-trials")
        yield Static("", id="basic-trials-error", classes="field-error")
        yield Static("[b]4. Precision[/b]  how the weights are loaded", classes="question")
        precision_options = [(label, key) for key, (label, _, _) in PRECISIONS.items()]
        precision_options.append(("Keep the dtypes set in the config or the advanced form", CUSTOM))
        yield Select(precision_options, value=self.basic_precision, allow_blank=False, id="basic-precision")
        yield Static("[b]5. Output folder[/b]  one sub-folder per run; empty means the default", classes="question")
        yield Input(
            value=str(self.values["output.runs_directory"]),
            placeholder=str(runs_root(Settings())),
            id="basic-output",
        )
        yield Static("[$text-muted]Everything else keeps its default. Press ctrl+n for the summary, or choose "
                     "Advanced from the start to see every setting.[/]", classes="hint")

    def _advanced_form(self) -> list[Static | SettingEditor]:
        """Built the first time the advanced step is shown (thirty-odd fields are not worth building otherwise)."""
        return setting_form(self.values, self.FORM_SECTIONS)

    def _default_config_path(self) -> Path:
        return self.heretic.config_path or Path.cwd() / "config.toml"

    def on_mount(self) -> None:
        self.sub_title = self.SUBTITLE
        self.query_one("#config-path", Input).value = str(self._default_config_path())
        self._update_model_hint(str(self.values["model.model"]))
        self._show_step("mode")

    def _show_step(self, step: str) -> None:
        self.step = step
        self.query_one("#wizard-steps", ContentSwitcher).current = step
        self.query_one("#wizard-nav").display = step != "mode"
        self.query_one("#next", Button).display = step in ("basic", "advanced")
        self.sub_title = self.SUBTITLE if step == "mode" else f"{self.SUBTITLE} · {step}"
        if step == "mode":
            self.query_one("#choose-basic", Button).focus()
        elif step == "basic":
            self._sync_basic()
            self.query_one("#basic-model", Input).focus()
        elif step == "advanced":
            self._sync_advanced()
        elif step == "summary":
            self.query_one("#start", Button).focus()
        self._update_status()
        self.refresh_bindings()

    def _update_status(self) -> None:
        status = self.query_one("#wizard-status", Static)
        problems = self._problems()
        if problems and self.step in ("basic", "advanced"):
            status.update(f"[$error]{len(problems)} value(s) to fix[/]")
        else:
            status.update("")
        self.query_one("#next", Button).disabled = bool(problems)

    def _problems(self) -> dict[str, str]:
        """The problems that block the current step: the basic questions' own, or the advanced editors'."""
        basic = self.step == "basic"
        return {key: message for key, message in self.errors.items() if key.startswith("basic.") == basic}

    def _sync_basic(self) -> None:
        """Show the current values in the basic form (they may have been edited in the advanced one)."""
        self.basic_preset = prompt_preset_of(self.values)
        self.basic_precision = precision_of(self.values)
        with self.prevent(Input.Changed, Select.Changed):
            self.query_one("#basic-model", Input).value = str(self.values["model.model"])
            self.query_one("#basic-trials", Input).value = str(self.values["optimization.trials"])
            self.query_one("#basic-output", Input).value = str(self.values["output.runs_directory"])
            self.query_one("#basic-prompts", Select).value = self.basic_preset
            self.query_one("#basic-precision", Select).value = self.basic_precision
        self._update_model_hint(str(self.values["model.model"]))

    def _sync_advanced(self) -> None:
        """Build the form the first time (then focus its first field), else show the values the basic form set."""
        form = self.query_one("#advanced", VerticalScroll)
        if not form.children:
            form.mount_all(self._advanced_form())
            self.call_after_refresh(self._focus_editor, 0)
            return
        for editor in self.query(SettingEditor):
            if editor.spec.key in self.errors and not editor.check:
                continue
            problem = editor.set_value(self.values[editor.spec.key])
            if problem is None:
                self.errors.pop(editor.spec.key, None)
            else:
                self.errors[editor.spec.key] = problem
        self._focus_editor(0)

    def _editors(self) -> list[SettingEditor]:
        return list(self.query_one("#advanced", VerticalScroll).query(SettingEditor))

    def _focus_editor(self, index: int) -> None:
        editors = self._editors()
        if editors:
            editors[max(0, min(index, len(editors) - 1))].field.focus()
            self._update_status()

    def _focused_editor(self) -> SettingEditor | None:
        node = self.focused
        while node is not None and not isinstance(node, SettingEditor):
            node = node.parent  # type: ignore[assignment]
        return node

    def action_jump_section(self, step: int) -> None:
        """Focus the first field of the next (or previous) section and show its title at the top."""
        editors = self._editors()
        if not editors:
            return
        sections = list(dict.fromkeys(editor.spec.section for editor in editors))
        current = self._focused_editor()
        index = sections.index(current.spec.section) if current is not None else -1 if step > 0 else 0
        target = sections[(index + step) % len(sections)]
        first = next(editor for editor in editors if editor.spec.section == target)
        first.field.focus(scroll_visible=False)
        form = self.query_one("#advanced", VerticalScroll)
        form.scroll_to_widget(self.query_one(f"#{section_title_id(target)}"), animate=False, top=True)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """A field that gets focus brings its whole editor into view, label and help included: scrolling only the
        field into view (Textual's default) hides the label above it when moving back up the form."""
        editor = self._focused_editor()
        if editor is not None:
            self.call_after_refresh(self._reveal, editor)

    def _reveal(self, editor: SettingEditor) -> None:
        if editor.is_mounted and self.step == "advanced":
            self.query_one("#advanced", VerticalScroll).scroll_to_widget(editor, animate=False)

    def _update_model_hint(self, text: str) -> None:
        self._show_hint("model", *describe_model_choice(text))

    def _show_hint(self, question: str, hint: str, valid: bool) -> None:
        """Show a basic question's hint under it; an invalid answer is also an error that blocks Next."""
        widget = self.query_one(f"#basic-{question}-hint", Static)
        widget.update(escape_markup(hint))
        widget.set_class(not valid, "-error")
        if valid:
            self.errors.pop(f"basic.{question}", None)
        else:
            self.errors[f"basic.{question}"] = hint

    def on_input_changed(self, event: Input.Changed) -> None:
        """The questions both wizards ask (model, output folder) here; the others in :meth:`basic_answer`."""
        field = event.input.id
        if field == "basic-model":
            self.values["model.model"] = event.value.strip()
            self._update_model_hint(event.value)
        elif field == "basic-output":
            self.values["output.runs_directory"] = event.value.strip()
        elif not self.basic_answer(field or "", event.value):
            return
        self._update_status()

    def basic_answer(self, field: str, text: str) -> bool:
        """Take the answer to a basic question of this wizard's own; False when ``field`` is not one."""
        if field != "basic-trials":
            return False
        spec = next(spec for spec in setting_fields() if spec.key == "optimization.trials")
        error = self.query_one("#basic-trials-error", Static)
        try:
            self.values["optimization.trials"] = parse_field(spec, text)
            self.errors.pop("basic.trials", None)
            error.update("")
        except UserInputError as problem:
            message = str(problem).removeprefix("Wizard: ")
            self.errors["basic.trials"] = message
            error.update(escape_markup(message))
        return True

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.value is Select.NULL:
            return
        if event.select.id == "basic-prompts":
            self.basic_preset = str(event.value)
        elif event.select.id == "basic-precision":
            self.basic_precision = str(event.value)
        else:
            return
        self._apply_basic_choices()

    def _apply_basic_choices(self) -> None:
        overrides = basic_overrides(
            str(self.values["model.model"]),
            self.basic_preset,
            int(self.values["optimization.trials"]),
            self.basic_precision,
            str(self.values["output.runs_directory"]),
        )
        self.values.update(copy.deepcopy(overrides))

    def on_setting_editor_changed(self, event: SettingEditor.Changed) -> None:
        if event.error is None:
            self.values[event.key] = event.value
            self.errors.pop(event.key, None)
        else:
            self.errors[event.key] = event.error
        self._update_status()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "choose-basic": lambda: self._choose("basic"),
            "choose-advanced": lambda: self._choose("advanced"),
            "back": self.action_back,
            "next": self.action_next,
            "save": self.action_save,
            "start": self.action_start,
        }
        action = actions.get(event.button.id or "")
        if action:
            event.stop()
            action()
        elif (event.button.id or "").startswith("offer-"):
            event.stop()
            self.apply_offer(int((event.button.id or "").removeprefix("offer-")))

    def action_choose(self, mode: str) -> None:
        self._choose(mode)

    def _choose(self, mode: str) -> None:
        self.mode = mode
        self._show_step(mode)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose":
            return self.step == "mode"
        if action == "jump_section":
            return self.step == "advanced"
        if action == "next":
            return self.step in ("basic", "advanced")
        if action in ("save", "start"):
            return self.step == "summary"
        return True

    def action_back(self) -> None:
        if self.step == "summary":
            self._show_step(self.mode)
        elif self.step in ("basic", "advanced"):
            self._show_step("mode")
        else:
            self.dismiss()

    def action_next(self) -> None:
        if self.step not in ("basic", "advanced"):
            return
        if self.step == "basic":
            self._apply_basic_choices()
        problems = self._problems()
        if problems:
            key, message = next(iter(problems.items()))
            self.notify(message, title=f"Fix {key.removeprefix('basic.')}", severity="error")
            return
        settings = self._checked_settings()
        if settings is None:
            return
        self._show_summary(settings)

    def _show_summary(self, settings: Settings) -> None:
        self.query_one("#summary-text", Static).update(self._summary_markup(settings))
        self._show_plan(settings)
        self._show_step("summary")

    def _show_plan(self, settings: Settings) -> None:
        """The plan before any download under the summary, with a button for each change that would make it fit.

        A local model's metadata is read at once (safetensors headers: milliseconds); a hub id's in a thread.
        """
        self.query_one("#plan-offers", Horizontal).remove_children()
        reference = settings.model.model
        if KIND_HUB == self._model_kind(reference):
            self.query_one("#summary-plan", Static).update("[$text-muted]Plan: reading the model's metadata on the "
                                                           "Hub…[/]")
            self._plan_in_thread(settings)
        else:
            self._plan_ready(*self._make_plan(settings))

    @staticmethod
    def _model_kind(reference: str) -> str | None:
        try:
            return parse_model_reference(reference, allow_trial=False).kind
        except HereticError:
            return None

    def _make_plan(self, settings: Settings) -> tuple[Plan | None, str]:
        snapshot = self.heretic.resource_probe.sample(None)
        gpus = [(gpu.name, gpu.total_bytes - gpu.used_bytes, gpu.total_bytes) for gpu in snapshot.gpus]
        try:
            return plan_model(settings, gpus=gpus,
                              host_available=snapshot.ram_total_bytes - snapshot.ram_used_bytes), ""
        except Exception as error:
            return None, failure_message(error)

    @work(thread=True, group="wizard-plan", exclusive=True, exit_on_error=False)
    def _plan_in_thread(self, settings: Settings) -> None:
        plan, problem = self._make_plan(settings)
        self.app.call_from_thread(self._plan_ready, plan, problem)

    def _plan_ready(self, plan: Plan | None, problem: str) -> None:
        shown = self.query_one("#summary-plan", Static)
        if plan is None:
            shown.update(f"[b]Plan[/b]\n[$text-muted]{escape_markup(problem)}[/]")
            return
        colour = "$success" if plan.fits else "$error"
        lines = [f"[b]Plan[/b] [{colour}]{escape_markup(plan.verdict)}[/]"]
        lines += [escape_markup(line) for line in plan_lines(plan) if not line.startswith(("verdict", "offer"))]
        offers = [offer for offer in plan.offers if offer.settings]
        if offers:
            lines.append("[b]What would fit[/b] (a button applies the change)")
            lines += [f"  {escape_markup(offer.title)}: {'fits' if offer.fits else 'still does not fit'}; "
                      f"{escape_markup(offer.note)}" for offer in offers]
        shown.update("\n".join(lines))
        self.plan_offers = offers
        buttons = self.query_one("#plan-offers", Horizontal)
        buttons.remove_children()
        buttons.mount_all([Button(f"Apply: {offer.title.split(':')[0].split('(')[0].strip()}", id=f"offer-{index}",
                                  compact=True) for index, offer in enumerate(offers)])

    def apply_offer(self, index: int) -> None:
        """Put an offer's settings into the wizard's values and show the summary (and plan) again."""
        for key, value in self.plan_offers[index].settings.items():
            self.values[key] = value
        settings = self._checked_settings()
        if settings is not None:
            self._show_summary(settings)

    def _checked_settings(self) -> Settings | None:
        """The settings, or None after saying in a dialog why the core refuses the combination."""
        try:
            return self.current_settings()
        except UserInputError as error:
            self.app.push_screen(MessageDialog("These settings do not fit together", str(error)))
            return None

    def current_settings(self) -> Settings:
        """The settings the wizard's values stand for, validated by the core (raises UserInputError)."""
        nested: dict[str, dict[str, Any]] = {}
        for spec in setting_fields():
            nested.setdefault(spec.section, {})[spec.name] = copy.deepcopy(self.values[spec.key])
        return settings_from_dict(nested, origin="Wizard")

    def changed_settings(self, settings: Settings) -> list[str]:
        """``section.name = value`` for each setting of the job's sections that differs from its default."""
        defaults = settings_to_dict(Settings())
        chosen = settings_to_dict(settings)
        secrets = {spec.key for spec in setting_fields() if spec.secret}
        return [
            f"  {section}.{name} = {escape_markup(value_to_text(value))}"
            for section in self.FORM_SECTIONS
            for name, value in chosen[section].items()
            if defaults[section][name] != value and f"{section}.{name}" not in secrets
            and f"{section}.{name}" not in self.SUMMARY_SKIPS
        ]

    def _summary_markup(self, settings: Settings) -> str:
        changed = self.changed_settings(settings)
        lines = [
            "[b]Summary[/b]",
            "",
            f"Model       {escape_markup(settings.model.model)}",
            f"Trials      {settings.optimization.trials} ({search_plan(settings)})",
            f"Precision   {escape_markup(', '.join(settings.model.dtypes))} · quantization "
            f"{settings.model.quantization}",
            f"Runs folder {escape_markup(str(runs_root(settings)))}",
            "",
            "[b]Settings that differ from the defaults[/b]" if changed else "All other settings are defaults.",
            *changed,
            "",
            "[$text-muted]Start checks the model and prompts first (a few seconds), then opens the dashboard.[/]",
        ]
        return "\n".join(lines)

    def action_save(self) -> None:
        if self.step != "summary":
            return
        path = Path(self.query_one("#config-path", Input).value.strip() or "config.toml").expanduser()
        try:
            settings = self.current_settings()
            existed = path.exists()
            save_config(settings, path)
        except UserInputError as error:
            self.app.push_screen(MessageDialog("Settings not saved", str(error)))
            return
        except OSError as error:
            self.app.push_screen(MessageDialog("Settings not saved", f"{path}: {error.strerror or error}"))
            return
        self.heretic.config_path = path
        backup = f" (the previous file is {path.name}.bak)" if existed else ""
        self.notify(f"Saved to {path}{backup}", title="Settings saved")

    def action_start(self) -> None:
        if self.step != "summary":
            return
        settings = self._checked_settings()
        if settings is None:
            return
        self.notify(self.starting_message, title="Starting")
        self.start_run(settings)

    starting_message = "Checking the model and prompts…"

    def start_run(self, settings: Settings) -> None:
        """Hand the finished settings to the app, which preflights them and opens the dashboard."""
        self.heretic.start_abliteration_run(settings)
