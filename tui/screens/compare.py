"""A trial's answers next to the original model's, on a few prompts, to see what abliteration changed.

The two models run one after the other in the chat worker (the original first, then the trial), so a large model
is never held twice in memory. Each prompt is answered on its own, without conversation history.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static, TextArea

from core.builtin_prompts import builtin_prompts
from core.chat import ChatError, ChatModel, ChatSession
from core.jobs import RunDirectory
from core.settings import load_settings
from tui.formatting import escape_markup
from tui.screens.base import HereticScreen

ORIGINAL = "original"
TRIAL = "trial"
COMPARE_MAX_NEW_TOKENS = 160


def default_prompts() -> list[str]:
    """Three prompts the original model should refuse and one it should answer, from the built-in test split."""
    return builtin_prompts("harmful", "test")[:3] + builtin_prompts("harmless", "test")[:1]


class ComparePiece(Message):
    def __init__(self, index: int, side: str, text: str) -> None:
        super().__init__()
        self.index = index
        self.side = side
        self.text = text


class CompareStatus(Message):
    def __init__(self, text: str, finished: bool = False) -> None:
        super().__init__()
        self.text = text
        self.finished = finished


class CompareScreen(HereticScreen[None]):
    """Edit the prompts (one per line), then ctrl+r answers them with both models."""

    BINDINGS = [
        Binding("ctrl+r", "run", "Compare", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_path: Path, trial: int) -> None:
        super().__init__()
        self.run_path = run_path
        self.trial = trial
        self.running = False
        self.answers: dict[tuple[int, str], str] = {}
        self._sessions: list[ChatSession] = []
        self._closed = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="compare"):
            yield TextArea("\n".join(default_prompts()), id="compare-prompts")
            yield Static("Edit the prompts (one per line) and press ctrl+r. The original model answers first, then "
                         "the trial.", id="compare-status")
            yield VerticalScroll(id="compare-results")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.run_path.name} · compare trial {self.trial}"
        self.query_one("#compare-prompts").border_title = "Prompts"
        self.query_one("#compare-results").border_title = f"Original · trial {self.trial}"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run":
            return not self.running
        return True

    def action_run(self) -> None:
        prompts = [line.strip() for line in self.query_one("#compare-prompts", TextArea).text.splitlines()]
        prompts = [prompt for prompt in prompts if prompt]
        if not prompts:
            self.notify("Write at least one prompt.", severity="warning")
            return
        results = self.query_one("#compare-results", VerticalScroll)
        results.remove_children()
        self.answers = {}
        for index, prompt in enumerate(prompts):
            results.mount(
                Vertical(
                    Static(f"[b]{index + 1}. {escape_markup(prompt)}[/b]", classes="compare-prompt"),
                    Horizontal(
                        Static("…", id=f"answer-{index}-{ORIGINAL}", classes="compare-answer"),
                        Static("…", id=f"answer-{index}-{TRIAL}", classes="compare-answer"),
                        classes="compare-row",
                    ),
                    classes="compare-item",
                )
            )
        self.running = True
        self.refresh_bindings()
        self._compare(prompts)

    @work(thread=True, group="compare", exclusive=True, exit_on_error=False)
    def _compare(self, prompts: list[str]) -> None:
        try:
            self._answer_with_both(prompts)
        except Exception as error:
            self.post_message(CompareStatus(f"[$error]{escape_markup(f'{type(error).__name__}: {error}')}[/]",
                                            finished=True))

    def _answer_with_both(self, prompts: list[str]) -> None:
        settings = load_settings(RunDirectory.open(self.run_path).config_path, environ={}, search_default_paths=False)
        system = settings.prompts.system_prompt
        sides = [
            (ORIGINAL, ChatModel.plain(settings.model)),
            (TRIAL, ChatModel.from_trial(self.run_path, self.trial)),
        ]
        for side, model in sides:
            if self._closed:
                return
            self.post_message(CompareStatus(f"Loading the {side} model ({escape_markup(model.label)})…"))
            session = ChatSession(model, system_prompt=system, max_new_tokens=COMPARE_MAX_NEW_TOKENS,
                                  log_path=self.run_path / "chat-worker.log")
            self._sessions.append(session)
            try:
                session.start()
                for index, prompt in enumerate(prompts):
                    if self._closed:
                        return
                    self.post_message(CompareStatus(f"The {side} model answers prompt {index + 1}/{len(prompts)}…"))
                    for piece in session.ask(prompt, remember=False):
                        self.post_message(ComparePiece(index, side, piece))
            except ChatError as error:
                self.post_message(CompareStatus(f"[$error]{side}: {escape_markup(str(error))}[/]", finished=True))
                return
            finally:
                session.close()
        self.post_message(CompareStatus("Done. Edit the prompts and press ctrl+r to compare again.", finished=True))

    def on_compare_piece(self, message: ComparePiece) -> None:
        key = (message.index, message.side)
        self.answers[key] = self.answers.get(key, "") + message.text
        label = "original" if message.side == ORIGINAL else f"trial {self.trial}"
        widget = self.query_one(f"#answer-{message.index}-{message.side}", Static)
        widget.update(f"[$text-muted]{label}:[/] {escape_markup(self.answers[key])}")

    def on_compare_status(self, message: CompareStatus) -> None:
        self.query_one("#compare-status", Static).update(message.text)
        if message.finished:
            self.running = False
            self.refresh_bindings()

    def action_back(self) -> None:
        self.dismiss()

    def on_unmount(self) -> None:
        self._closed = True
        for session in self._sessions:
            self.app.run_worker(session.stop, thread=True, group="compare-close", exit_on_error=False)
