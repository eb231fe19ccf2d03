"""A trial's answers next to the original model's, to see what abliteration changed.

The comparison is core's ``compare`` job (one model in memory at a time, refusals, KL against the original,
perplexity, a Markdown and JSON report in its own run folder). This screen starts it, follows its events like the
dashboard does, and shows the answers side by side when it ends; leaving the screen does not stop it, and the
report stays in the runs list.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Label, Static

from heretic_tui.core.runs.events import ArtifactWritten, JobCancelled, JobError, JobFinished, Metrics, PhaseStarted, Progress
from heretic_tui.core.api import JobHandle, RunDirectory, read_json_object, start_compare
from heretic_tui.core.settings import load_settings, setting_fields
from heretic_tui.tui.formatting import describe_figures, escape_markup, format_figure, format_kl
from heretic_tui.tui.job_follower import JobEventMessage, JobFollowEnded, JobFollower
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.screens.dialogs import MessageDialog

DEFAULT_PROMPTS = "builtin:harmful@test"
DEFAULT_PROMPT_COUNT = 4
DEFAULT_MAX_NEW_TOKENS = 96
COMPARISON_JSON = "comparison.json"


def comparison_models(run_path: Path, trial: int, original: str) -> list[str]:
    """The two models as core's compare job names them: the original first (the KL reference), then the trial."""
    return [original, f"{run_path}#{trial}"]


def comparison_headline(models: list[dict[str, Any]]) -> str:
    """Each model's refusals, its KL against the first model (the original, which is the reference and not a
    trial's KL from the study) and its perplexity, rounded, each figure saying what it is."""
    reference = str(models[0].get("label", "?")) if models else "?"
    parts = []
    for number, model in enumerate(models):
        figures = [f"{model.get('refusals')}/{model.get('total')} refusals"]
        if number == 0:
            figures.append("the KL reference")
        elif model.get("kl_vs_first") is not None:
            figures.append(f"KL vs {escape_markup(reference)} {format_kl(model.get('kl_vs_first'))}")
        else:
            figures.append("KL not comparable (another tokenizer)")
        if model.get("perplexity") is not None:
            figures.append(f"perplexity {format_figure(model.get('perplexity'))}")
        parts.append(f"[b]{escape_markup(str(model.get('label', '?')))}[/b] " + ", ".join(figures))
    return "\n".join(parts)


class CompareScreen(HereticScreen[None]):
    """Choose the prompts, then ctrl+r runs the comparison job and shows its answers side by side."""

    BINDINGS = [
        Binding("ctrl+r", "run", "Compare", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_path: Path, trial: int) -> None:
        super().__init__()
        self.run_path = run_path
        self.trial = trial
        self.running = False
        self.job_path: Path | None = None
        self.follower = JobFollower(self, group="compare-follow")
        self._status: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="compare"):
            with Horizontal(id="compare-form"):
                with Vertical(classes="compare-field -wide"):
                    yield Label("Prompts (a prompt source)")
                    yield Input(DEFAULT_PROMPTS, id="compare-prompts")
                with Vertical(classes="compare-field"):
                    yield Label("How many")
                    yield Input(str(DEFAULT_PROMPT_COUNT), id="compare-count")
                with Vertical(classes="compare-field"):
                    yield Label("Max tokens")
                    yield Input(str(DEFAULT_MAX_NEW_TOKENS), id="compare-tokens")
            yield Static("", id="compare-status")
            yield VerticalScroll(id="compare-results")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.run_path.name} · compare trial {self.trial}"
        self.query_one("#compare-results").border_title = f"Original · trial {self.trial}"
        self._set_status(
            "Press ctrl+r to answer the prompts with the original model and with this trial (one after the other, "
            "in a background job). Sources: builtin:harmful@test, builtin:harmless@test, a text file, hf:owner/name."
        )

    def _set_status(self, markup: str) -> None:
        self.query_one("#compare-status", Static).update(markup)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run":
            return not self.running
        return True

    def _read_number(self, field: str, name: str) -> int | None:
        text = self.query_one(f"#{field}", Input).value.strip()
        if not text.isdigit() or int(text) < 1:
            self.notify(f"{name} must be a whole number of at least 1.", severity="error")
            return None
        return int(text)

    def action_run(self) -> None:
        count = self._read_number("compare-count", "How many")
        tokens = self._read_number("compare-tokens", "Max tokens")
        source = self.query_one("#compare-prompts", Input).value.strip()
        if count is None or tokens is None:
            return
        limit = next(spec for spec in setting_fields() if spec.key == "prompts.max_eval_prompts").maximum or count
        self.running = True
        self.refresh_bindings()
        self.query_one("#compare-results", VerticalScroll).remove_children()
        self._status = ["Checking the models and prompts…"]
        self._set_status(self._status[0])
        self._start(source, min(count, int(limit)), tokens)

    @work(thread=True, group="compare-start", exclusive=True, exit_on_error=False)
    def _start(self, source: str, count: int, tokens: int) -> None:
        def start() -> JobHandle:
            settings = load_settings(RunDirectory.open(self.run_path).config_path, environ={},
                                     search_default_paths=False)
            job_settings = copy.deepcopy(settings)
            job_settings.prompts.max_eval_prompts = count
            models = comparison_models(self.run_path, self.trial, settings.model.model)
            return start_compare(models, source, job_settings, max_new_tokens=tokens)

        self.start_from_thread(start, self._started, self._failed)

    def _failed(self, message: str) -> None:
        self.running = False
        self.refresh_bindings()
        self._set_status(f"[$error]{escape_markup(message)}[/]")
        self.app.push_screen(MessageDialog("The comparison did not run", message))

    def _started(self, handle: JobHandle) -> None:
        self.job_path = handle.run.path
        self._status = [f"Comparison job {escape_markup(handle.run.path.name)} started."]
        self._set_status(self._status[0])
        self.heretic.remember_followed_run(handle.run.path)
        self.follower.follow(handle)

    def on_job_event_message(self, message: JobEventMessage) -> None:
        if not self.follower.is_current(message):
            return
        item = message.event
        line = None
        if isinstance(item, PhaseStarted):
            line = f"▶ {escape_markup(item.description or item.phase)}"
        elif isinstance(item, Progress) and item.total:
            if self._status and self._status[-1].startswith("  "):
                self._status.pop()
            line = f"  {item.completed}/{item.total}"
        elif isinstance(item, Metrics):
            values = escape_markup(describe_figures(item.name, item.values))
            line = f"[$success]✔ {escape_markup(item.name)}: {values}[/]"
        elif isinstance(item, JobError):
            line = f"[$error]✘ {escape_markup(item.message)}[/]"
        elif isinstance(item, JobCancelled):
            line = "[$warning]Cancelled.[/]"
        elif isinstance(item, ArtifactWritten) and item.path.endswith(".md"):
            line = f"Report: {escape_markup(item.path)}"
        if line:
            self._status.append(line)
            self._set_status("\n".join(self._status[-5:]))
        if isinstance(item, JobFinished) and self.job_path is not None:
            self._show_results(self.job_path / COMPARISON_JSON)

    def on_job_follow_ended(self, message: JobFollowEnded) -> None:
        if not self.follower.is_current(message):
            return
        self.running = False
        self.refresh_bindings()

    def _show_results(self, path: Path) -> None:
        document = read_json_object(path)
        if not document:
            self._set_status(f"[$error]The comparison finished but {escape_markup(str(path))} is missing or "
                             "cannot be read; comparison.md in the same folder has the answers.[/]")
            return
        models = document.get("models", [])
        results = self.query_one("#compare-results", VerticalScroll)
        results.remove_children()
        results.mount(Static(comparison_headline(models), classes="compare-prompt"))
        for index, entry in enumerate(document.get("answers", [])):
            cells = []
            for model, response in zip(models, entry.get("responses", [])):
                mark = "[$error]refused[/]" if response.get("refused") else "[$success]answered[/]"
                cells.append(Static(f"[$text-muted]{escape_markup(model.get('label', '?'))}[/] {mark}\n"
                                    f"{escape_markup(response.get('text', ''))}", classes="compare-answer"))
            results.mount(Vertical(
                Static(f"[b]{index + 1}. {escape_markup(entry.get('prompt', ''))}[/b]", classes="compare-prompt"),
                Horizontal(*cells, classes="compare-row"),
                classes="compare-item",
            ))

    def action_back(self) -> None:
        self.dismiss()

    def on_unmount(self) -> None:
        self.follower.stop()
