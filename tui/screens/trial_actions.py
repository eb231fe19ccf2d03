"""What to do with one trial: export it (merged model or LoRA adapter), chat with it, compare it, review and
relabel its responses, run more trials.

Exports are worker jobs of their own (``RUN_DIR/jobs/...``); this screen follows the export job's events the
same way the dashboard follows a run, so leaving the screen or the app never stops an export either.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from heretic_tui.core.api import FORMAT_MERGED, METADATA_FILE, ChatModel, JobHandle, read_metadata, start_export
from heretic_tui.core.runs.events import ArtifactWritten, Event, JobCancelled, JobError, JobFinished, PhaseStarted
from heretic_tui.tui.formatting import escape_markup, format_duration, format_kl, format_refusals
from heretic_tui.tui.job_follower import JobEventMessage, JobFollower
from heretic_tui.tui.run_state import TrialRow
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.screens.dialogs import MessageDialog, ValueDialog

MORE_TRIALS = "more_trials"

TRIAL_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("export_merged", "e", "Export the merged model to a folder"),
    ("export_adapter", "l", "Export a LoRA adapter to a folder"),
    ("chat", "c", "Chat with this trial's model"),
    ("compare", "v", "Compare answers with the original model"),
    ("responses", "r", "Review its responses and correct their verdicts"),
    ("finetune", "f", "Fine-tune this trial's model (exports it first if needed)"),
    ("more_trials", "m", "Run more trials"),
)


def default_export_folder(run_path: Path, trial: int, adapter: bool) -> Path:
    return run_path / "exports" / (f"trial-{trial}-adapter" if adapter else f"trial-{trial}")


def find_exported_trial(run_path: Path, trial: int) -> Path | None:
    """A merged export of ``trial`` already written under the run's exports folder (its heretic.json says so)."""
    for metadata_path in sorted((run_path / "exports").glob(f"*/{METADATA_FILE}")):
        metadata = read_metadata(metadata_path.parent)
        if metadata.get("trial") == trial and metadata.get("format") == FORMAT_MERGED:
            return metadata_path.parent
    return None


def check_export_folder(text: str) -> str | None:
    """The same rule as the core's export check, early: an empty or new folder."""
    if not text.strip():
        return "Give a folder to write the model into."
    path = Path(text.strip()).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        return f"{path} exists and is not empty; choose a new folder."
    return None


def describe_parameters(params: dict[str, object]) -> list[str]:
    """The trial's parameters as a person reads them: the direction, then each component's weight kernel."""

    def number(name: str) -> str:
        value = params.get(name)
        return f"{value:.3g}" if isinstance(value, (int, float)) else "–"

    lines = [f"[b]direction[/b]  {escape_markup(str(params.get('direction_scope', '?')))} · index "
             f"{number('direction_index')}"]
    components = sorted({name.split(".", 1)[0] for name in params if "." in name})
    for component in components:
        lines.append(
            f"[b]{escape_markup(component)}[/b]  max {number(f'{component}.max_weight')} at layer "
            f"{number(f'{component}.max_weight_position')} · min {number(f'{component}.min_weight')} over "
            f"{number(f'{component}.min_weight_distance')} layers"
        )
    return lines


class TrialActionsScreen(HereticScreen[str | None]):
    """Dismissed with ``"more_trials"`` when the person asks for more trials (the dashboard asks how many)."""

    BINDINGS = [
        Binding("e", "export_merged", "Export"),
        Binding("l", "export_adapter", "Adapter"),
        Binding("c", "chat", "Chat"),
        Binding("v", "compare", "Compare"),
        Binding("r", "responses", "Responses"),
        Binding("f", "finetune", "Fine-tune"),
        Binding("m", "more_trials", "More trials"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_path: Path, trial: int, row: TrialRow | None = None, is_front: bool = False) -> None:
        super().__init__()
        self.run_path = run_path
        self.trial = trial
        self.row = row
        self.is_front = is_front
        self.follower = JobFollower(self, group="export-follow")
        self._export_lines: list[str] = []
        self._finetune_after_export: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="trial-screen"):
            yield Static(self._detail_markup(), id="trial-detail")
            yield OptionList(
                *[Option(f"[b]{key}[/b]  {label}", id=action) for action, key, label in TRIAL_ACTIONS],
                id="trial-action-list",
            )
            yield Static("", id="export-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.run_path.name} · trial {self.trial}"
        self.query_one("#trial-detail").border_title = f"Trial {self.trial}"
        self.query_one("#trial-action-list").border_title = "Actions"
        self.query_one("#export-status").display = False
        self.query_one("#trial-action-list").focus()

    def on_unmount(self) -> None:
        self.follower.stop()

    def _detail_markup(self) -> str:
        row = self.row
        if row is None:
            return f"Trial {self.trial}"
        lines = [
            f"Refusals {format_refusals(row.refusals, row.refusal_total)} · KL {format_kl(row.kl)} · "
            f"{format_duration(row.seconds)}" + (" · [$warning]on the Pareto front[/]" if self.is_front else ""),
        ]
        lines += describe_parameters(row.params)
        return "\n".join(lines)

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter (or a click) on an action runs it, like its key."""
        event.stop()
        if event.option.id:
            await self.run_action(event.option.id)

    def action_export_merged(self) -> None:
        self._ask_export(adapter=False)

    def action_export_adapter(self) -> None:
        self._ask_export(adapter=True)

    def _ask_export(self, adapter: bool) -> None:
        what = "a LoRA adapter (small; load it on top of the original model)" if adapter else "the merged model"

        def answered(folder: str | None) -> None:
            if folder:
                self._start_export(Path(folder.strip()).expanduser(), adapter)

        self.app.push_screen(
            ValueDialog(
                "Export trial " + str(self.trial),
                f"Write {what} with its tokenizer, chat template and a model card into this folder:",
                value=str(default_export_folder(self.run_path, self.trial, adapter)),
                check=check_export_folder,
            ),
            answered,
        )

    @work(thread=True, group="export-start", exclusive=True, exit_on_error=False)
    def _start_export(self, output: Path, adapter: bool) -> None:
        self.start_from_thread(lambda: start_export(self.run_path, self.trial, output, adapter=adapter),
                               lambda handle: self._export_started(handle, output),
                               lambda message: self.heretic.show_error("Export not started", message))

    def _export_started(self, handle: JobHandle, output: Path) -> None:
        job = escape_markup(handle.run.path.name)
        self._export_lines = [f"Exporting to {escape_markup(str(output))} (job {job})…"]
        self._show_export_status()
        self.heretic.remember_followed_run(handle.run.path)
        self.follower.follow(handle)

    def on_job_event_message(self, message: JobEventMessage) -> None:
        if not self.follower.is_current(message):
            return
        line = self._describe_export_event(message.event)
        if line:
            self._export_lines.append(line)
            self._show_export_status()
        if isinstance(message.event, JobFinished) and self._finetune_after_export is not None:
            folder, self._finetune_after_export = self._finetune_after_export, None
            self.heretic.open_finetune_wizard(model=str(folder))
        if isinstance(message.event, (JobError, JobCancelled)):
            self._finetune_after_export = None
        if isinstance(message.event, JobError):
            self.app.push_screen(
                MessageDialog("The export failed", message.event.message, details=message.event.traceback)
            )

    @staticmethod
    def _describe_export_event(item: Event) -> str | None:
        if isinstance(item, PhaseStarted):
            return f"▶ {item.description or item.phase}"
        if isinstance(item, ArtifactWritten):
            return f"[$success]✔ written: {escape_markup(item.path)}[/]"
        if isinstance(item, JobFinished):
            return "[$success]Export finished.[/]"
        if isinstance(item, JobCancelled):
            return "[$warning]Export cancelled.[/]"
        if isinstance(item, JobError):
            return f"[$error]✘ {escape_markup(item.message)}[/]"
        return None

    def _show_export_status(self) -> None:
        status = self.query_one("#export-status", Static)
        status.display = True
        status.border_title = "Export"
        status.update("\n".join(self._export_lines[-6:]))

    def action_chat(self) -> None:
        self.heretic.open_chat(ChatModel.from_trial(self.run_path, self.trial))

    def action_compare(self) -> None:
        from heretic_tui.tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(self.run_path, self.trial))

    def action_responses(self) -> None:
        from heretic_tui.tui.screens.responses import ResponsesScreen

        self.app.push_screen(ResponsesScreen(self.run_path, self.trial))

    def action_finetune(self) -> None:
        """Fine-tuning starts from a model folder: the trial's merged export, written first when there is none."""
        exported = find_exported_trial(self.run_path, self.trial)
        if exported is not None:
            self.heretic.open_finetune_wizard(model=str(exported))
            return

        def answered(folder: str | None) -> None:
            if folder:
                output = Path(folder.strip()).expanduser()
                self._finetune_after_export = output
                self._start_export(output, adapter=False)

        self.app.push_screen(
            ValueDialog(
                f"Fine-tune trial {self.trial}",
                "Fine-tuning starts from a model folder, and this trial has not been exported yet. Export the merged "
                "model into this folder; the fine-tune wizard opens when the export has finished:",
                value=str(default_export_folder(self.run_path, self.trial, adapter=False)),
                check=check_export_folder,
            ),
            answered,
        )

    def action_more_trials(self) -> None:
        self.dismiss(MORE_TRIALS)

    def action_back(self) -> None:
        self.dismiss(None)
