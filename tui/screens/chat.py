"""Chat with a model or a trial: answers stream in from the chat worker process, with stop and clear.

The model is loaded and run by ``heretic_tui.core.models.chat_worker`` in its own process; this screen only sends the conversation
and appends the streamed pieces, from a thread worker that posts messages.
"""

from __future__ import annotations

import threading
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, Static

from heretic_tui.core.api import ChatError, ChatModel, ChatSession
from heretic_tui.tui.formatting import escape_markup
from heretic_tui.tui.screens.base import HereticScreen


class ChatLoaded(Message):
    def __init__(self, name: str | None, error: str | None) -> None:
        super().__init__()
        self.name = name
        self.error = error


class ChatPiece(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ChatAnswerEnded(Message):
    def __init__(self, error: str | None) -> None:
        super().__init__()
        self.error = error


class ChatScreen(HereticScreen[None]):
    """Enter sends; the answer streams below. Leaving the screen stops the worker process."""

    BINDINGS = [
        Binding("ctrl+x", "stop", "Stop answer", priority=True),
        Binding("ctrl+l", "clear", "Clear", priority=True),
        Binding("ctrl+e", "edit_system", "System prompt", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, model: ChatModel, system_prompt: str = "") -> None:
        super().__init__()
        self.model = model
        log_path = Path(model.run_dir) / "chat-worker.log" if model.run_dir else None
        self.session = ChatSession(model, system_prompt=system_prompt, log_path=log_path)
        self.loaded = False
        self.generating = False
        self._answer_text = ""
        self._answer: Static | None = None
        self._closed = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="chat"):
            yield Static("", id="chat-status")
            yield VerticalScroll(id="chat-log")
            yield Input(value=self.session.system_prompt, placeholder="System prompt (empty for none)",
                        id="system-prompt")
            yield Input(placeholder="Loading the model…", id="chat-input", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"chat · {self.model.label}"
        self.query_one("#chat-log").border_title = escape_markup(self.model.label)
        self.query_one("#system-prompt").border_title = "System prompt"
        self._set_status(f"Loading {escape_markup(self.model.label)} in the chat worker…")
        self._load()

    @work(thread=True, group="chat-load", exit_on_error=False)
    def _load(self) -> None:
        try:
            name = self.session.start()
        except ChatError as error:
            self.post_message(ChatLoaded(None, str(error)))
            return
        self.post_message(ChatLoaded(name, None))

    def on_chat_loaded(self, message: ChatLoaded) -> None:
        if self._closed:
            self._close_session()
            return
        if message.error is not None:
            self._set_status(f"[$error]The model could not be loaded:[/] {escape_markup(message.error)}")
            self.heretic.show_error("Chat unavailable", message.error)
            return
        self.loaded = True
        device = f" on {self.session.device}" if self.session.device else ""
        self._set_status(f"{escape_markup(message.name or self.model.label)} loaded{device}. "
                         "Enter sends · ctrl+x stops an answer · ctrl+l clears.")
        field = self.query_one("#chat-input", Input)
        field.disabled = False
        field.placeholder = "Message (Enter to send)"
        field.focus()

    def _set_status(self, markup: str) -> None:
        self.query_one("#chat-status", Static).update(markup)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "system-prompt":
            self.session.system_prompt = event.value
            self.notify("System prompt set for the next messages.", timeout=2)
            self.query_one("#chat-input", Input).focus()
            return
        text = event.value.strip()
        if not text or not self.loaded or self.generating:
            return
        event.input.value = ""
        self.session.system_prompt = self.query_one("#system-prompt", Input).value
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(Static(escape_markup(text), classes="chat-message -user"))
        self._answer_text = ""
        self._answer = Static("…", classes="chat-message -assistant")
        log.mount(self._answer)
        log.scroll_end(animate=False)
        self.generating = True
        self.refresh_bindings()
        self._ask(text)

    @work(thread=True, group="chat-ask", exit_on_error=False)
    def _ask(self, text: str) -> None:
        try:
            for piece in self.session.ask(text):
                self.post_message(ChatPiece(piece))
        except ChatError as error:
            self.post_message(ChatAnswerEnded(str(error)))
            return
        self.post_message(ChatAnswerEnded(None))

    def on_chat_piece(self, message: ChatPiece) -> None:
        self._answer_text += message.text
        if self._answer is not None:
            self._answer.update(escape_markup(self._answer_text))
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def on_chat_answer_ended(self, message: ChatAnswerEnded) -> None:
        self.generating = False
        if message.error is not None:
            if self._answer is not None:
                self._answer.update(f"[$error]{escape_markup(message.error)}[/]")
            self.loaded = self.session.running
        elif self._answer is not None and not self._answer_text:
            self._answer.update("[$text-muted](empty answer)[/]")
        elif self._answer is not None and self.session.last_answer_stopped:
            self._answer.update(f"{escape_markup(self._answer_text)} [$warning](stopped)[/]")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generating
        if action == "clear":
            return not self.generating
        return True

    def action_stop(self) -> None:
        self.session.stop()

    def action_clear(self) -> None:
        if self.generating:
            return
        self.session.clear()
        self.query_one("#chat-log", VerticalScroll).remove_children()
        self._answer = None

    def action_edit_system(self) -> None:
        self.query_one("#system-prompt", Input).focus()

    def action_back(self) -> None:
        self.dismiss()

    def on_unmount(self) -> None:
        self._closed = True
        self._close_session()

    def _close_session(self) -> None:
        """Stop the worker process from a daemon thread: it may take seconds, and the app may be exiting.

        Should even that thread be cut short, the worker still ends: its stdin closes with this process.
        """
        threading.Thread(target=self.session.close, name="chat-close", daemon=True).start()
