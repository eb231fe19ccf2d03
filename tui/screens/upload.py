"""Upload a model folder to the Hugging Face Hub: folder, repository, visibility, token, per-file progress, URL.

Every check and the transfer itself are the core's; this screen validates as the user types (folder contents,
repository name) so nothing is sent that the core would refuse, then starts the core's upload job, a detached
worker like every run, and follows its events with the same follower the dashboards use. Leaving the screen or
quitting the app does not stop the upload; the runs list reopens it. The token lives only in the password field
and in a thread's local variables until the core hands it to the worker through a pipe: it is never put into a
message, a notification, the settings, an event or a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Footer, Header, Input, Label, Static, Switch

from heretic_tui.core.api import (
    MODEL_CARD_FILE,
    STATE_SENDING,
    JobHandle,
    default_repo_name,
    hub_user_name,
    resolve_token,
    start_upload,
    validate_model_folder,
    validate_repo_name,
)
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import ArtifactWritten, FileProgress, JobCancelled, JobError, JobFinished
from heretic_tui.tui.formatting import escape_markup, format_bytes
from heretic_tui.tui.job_follower import JobEventMessage, JobFollowEnded, JobFollower
from heretic_tui.tui.screens.base import HereticScreen
from heretic_tui.tui.widgets.phase_list import progress_bar

PROGRESS_BAR_WIDTH = 30
FILES_SHOWN = 12


class UploadNotStarted(Message):
    """The upload job could not start: ``error`` is a sentence without the token."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class UserNameFound(Message):
    """The token's user name, for the default ``<user>/<model>-heretic`` repository name."""

    def __init__(self, user: str | None, problem: str | None) -> None:
        super().__init__()
        self.user = user
        self.problem = problem


def describe_token_source() -> str:
    """Where a token would come from if the field stays empty; says nothing about the token itself."""
    if os.environ.get("HF_TOKEN", "").strip():
        return "HF_TOKEN is set: leave the field empty to use it."
    try:
        import huggingface_hub

        if huggingface_hub.get_token():
            return "A cached Hugging Face login was found: leave the field empty to use it."
    except Exception:
        pass
    return "No HF_TOKEN and no cached login: paste a token with write access (it is not stored)."


def describe_folder(folder: Path, files: list[str]) -> str:
    size = sum((folder / name).stat().st_size for name in files)
    card = "present" if (folder / MODEL_CARD_FILE).exists() else "generated from heretic.json when uploading"
    shown = ", ".join(files[:6]) + (f" and {len(files) - 6} more" if len(files) > 6 else "")
    return f"✔ {len(files)} files, {format_bytes(size)}: {shown}\n  model card {card}"


class UploadScreen(HereticScreen[None]):
    """``folder`` prefills the folder field (from the model browser, a run's outputs, or a typed path)."""

    BINDINGS = [
        Binding("ctrl+u", "upload", "Upload", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.initial_folder = folder
        self.folder_files: list[str] | None = None
        self.folder_error: str | None = "Give the model folder to upload."
        self.repo_error: str | None = None
        self.repo_edited = False
        self.user: str | None = None
        self.uploading = False
        self.sent: list[tuple[str, int]] = []
        """Files on the Hub, in the order the job reached them: (path in the repository, size)."""
        self.url: str | None = None
        self.job_path: Path | None = None
        self.follower = JobFollower(self, group="upload-follow")

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="upload-form"):
            yield Static("[b]Model folder[/b]  a merged model (config.json + weights) or a LoRA adapter folder",
                         classes="question")
            yield Input(value=str(self.initial_folder or ""), placeholder="/path/to/model-folder", id="upload-folder")
            yield Static("", id="folder-check", classes="hint")
            yield Static("[b]Repository[/b]  owner/name on the Hub (created if it does not exist)", classes="question")
            yield Input(placeholder="alice/my-model-heretic", id="upload-repo")
            yield Static("", id="repo-check", classes="hint")
            with Horizontal(id="upload-visibility"):
                yield Switch(value=True, id="upload-private")
                yield Label("", id="visibility-label")
            yield Static("[b]Token[/b]  optional when HF_TOKEN or a cached login exists; never saved or shown",
                         classes="question")
            yield Input(password=True, placeholder="hf_…", id="upload-token")
            yield Static(describe_token_source(), id="token-hint", classes="hint")
            with Horizontal(classes="wizard-buttons"):
                yield Button("Upload (ctrl+u)", id="upload-start", variant="success", compact=True)
        yield Static("", id="upload-progress")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "upload"
        self.query_one("#upload-form").border_title = "Upload to the Hugging Face Hub"
        self.query_one("#upload-progress").border_title = "Progress"
        self.query_one("#upload-progress").display = False
        self._show_visibility(True)
        self._check_folder(self.query_one("#upload-folder", Input).value)
        self._check_repo("")
        self.query_one("#upload-folder", Input).focus()
        self._look_up_user(None)

    def _show_visibility(self, private: bool) -> None:
        label = ("[b]Private[/b]: only you (and your organisation) can see it. Switch off to publish it."
                 if private else "[b][$warning]Public[/][/b]: anyone can see and download it.")
        self.query_one("#visibility-label", Label).update(label)

    def _check_folder(self, text: str) -> None:
        check = self.query_one("#folder-check", Static)
        self.folder_files = None
        if not text.strip():
            self.folder_error = "Give the model folder to upload."
            check.update(self.folder_error)
            check.set_class(False, "-error")
            return
        folder = Path(text.strip()).expanduser()
        try:
            files = validate_model_folder(folder)
        except UserInputError as error:
            self.folder_error = str(error)
            check.update(escape_markup(self.folder_error))
            check.set_class(True, "-error")
            return
        self.folder_error = None
        self.folder_files = files
        check.update(escape_markup(describe_folder(folder, files)))
        check.set_class(False, "-error")
        self._suggest_repo()

    def _check_repo(self, text: str) -> None:
        check = self.query_one("#repo-check", Static)
        if not text.strip():
            self.repo_error = None
            check.update("Empty: <your user>/<folder name>-heretic, looked up with the token when uploading.")
            check.set_class(False, "-error")
            return
        try:
            validate_repo_name(text.strip())
        except UserInputError as error:
            self.repo_error = str(error)
            check.update(escape_markup(self.repo_error))
            check.set_class(True, "-error")
            return
        self.repo_error = None
        check.update(f"✔ https://huggingface.co/{escape_markup(text.strip())}")
        check.set_class(False, "-error")

    def _suggest_repo(self) -> None:
        """Fill ``<user>/<model>-heretic`` while the user has not typed a name of their own."""
        if self.user is None or self.repo_edited or self.folder_error is not None:
            return
        folder = Path(self.query_one("#upload-folder", Input).value.strip()).expanduser()
        try:
            name = default_repo_name(self.user, folder)
        except UserInputError:
            return
        field = self.query_one("#upload-repo", Input)
        with self.prevent(Input.Changed):
            field.value = name
        self._check_repo(name)

    @work(thread=True, group="hub-user", exclusive=True, exit_on_error=False)
    def _look_up_user(self, explicit: str | None) -> None:
        try:
            token = resolve_token(explicit)
            user = hub_user_name(token, endpoint=self.heretic.hub_endpoint)
        except UserInputError as error:
            self.post_message(UserNameFound(None, str(error)))
            return
        except Exception as error:
            self.post_message(UserNameFound(None, f"The Hub could not be reached ({type(error).__name__})."))
            return
        self.post_message(UserNameFound(user, None))

    def on_user_name_found(self, message: UserNameFound) -> None:
        if message.user is not None:
            self.user = message.user
            self.query_one("#token-hint", Static).update(
                f"Signed in as [b]{escape_markup(message.user)}[/b]. " + describe_token_source()
                if not self.query_one("#upload-token", Input).value else
                f"The token belongs to [b]{escape_markup(message.user)}[/b]."
            )
            self._suggest_repo()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "upload-folder":
            self._check_folder(event.value)
        elif event.input.id == "upload-repo":
            self.repo_edited = bool(event.value.strip())
            self._check_repo(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "upload-token" and event.value.strip():
            event.stop()
            self._look_up_user(event.value)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "upload-private":
            self._show_visibility(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "upload-start":
            event.stop()
            self.action_upload()

    def action_upload(self) -> None:
        if self.uploading:
            self.notify("An upload is already running.", severity="warning")
            return
        problem = self.folder_error or self.repo_error
        if problem:
            self.notify(problem, title="Not uploaded", severity="error")
            return
        folder = Path(self.query_one("#upload-folder", Input).value.strip()).expanduser()
        repo = self.query_one("#upload-repo", Input).value.strip()
        private = self.query_one("#upload-private", Switch).value
        self.uploading = True
        self.sent = []
        self.url = None
        self._show_progress(f"Starting the upload of {escape_markup(str(folder))} "
                            f"({'private' if private else 'public'})…", 0, 0)
        self._start(folder, repo, private, self.query_one("#upload-token", Input).value)

    @work(thread=True, group="upload-start", exclusive=True, exit_on_error=False)
    def _start(self, folder: Path, repo: str, private: bool, explicit_token: str) -> None:
        """Resolve the token and the repository, then start the job; only the handle leaves this function."""
        endpoint = self.heretic.hub_endpoint

        def start() -> JobHandle:
            token = resolve_token(explicit_token)
            name = repo or default_repo_name(hub_user_name(token, endpoint=endpoint), folder)
            return start_upload(folder, name, private=private, token=token, endpoint=endpoint,
                                settings=self.heretic.settings)

        self.start_from_thread(start, self._started, lambda message: self.post_message(UploadNotStarted(message)))

    def _started(self, handle: JobHandle) -> None:
        self.job_path = handle.run.path
        self.heretic.remember_followed_run(handle.run.path)
        self._show_progress("Uploading… (the upload keeps going if you leave this screen or quit; the runs list "
                            "reopens it)", 0, 0)
        self.follower.follow(handle)

    def on_upload_not_started(self, message: UploadNotStarted) -> None:
        self.uploading = False
        self._show_progress(f"[$error]✘ {escape_markup(message.error)}[/]", 0, 0)
        self.notify(message.error[:300], title="Upload failed", severity="error")

    def on_job_event_message(self, message: JobEventMessage) -> None:
        if not self.follower.is_current(message):
            return
        item = message.event
        if isinstance(item, FileProgress):
            if item.state != STATE_SENDING:
                self.sent.append((item.path, item.size))
            self._show_progress(f"Sending {escape_markup(item.path)}…" if item.state == STATE_SENDING
                                else "Uploading…", item.total_done, item.total)
        elif isinstance(item, ArtifactWritten) and item.name == "repository":
            self.url = item.path
        elif isinstance(item, JobFinished):
            self.url = str(item.summary.get("url") or self.url or "")
            total = int(item.summary.get("bytes") or sum(size for _, size in self.sent) or 1)
            self._show_progress(f"[$success]✔ Uploaded:[/] [b]{escape_markup(self.url)}[/]", total, total)
            self.notify(self.url, title="Upload finished")
        elif isinstance(item, JobError):
            self._show_progress(f"[$error]✘ {escape_markup(item.message)}[/]", 0, 0)
            self.notify(item.message[:300], title="Upload failed", severity="error")
        elif isinstance(item, JobCancelled):
            self._show_progress("[$warning]Upload cancelled; what was sent is kept on the Hub.[/]", 0, 0)

    def on_job_follow_ended(self, message: JobFollowEnded) -> None:
        if self.follower.is_current(message):
            self.uploading = False

    def on_unmount(self) -> None:
        self.follower.stop()

    def _show_progress(self, headline: str, done: int, total: int) -> None:
        widget = self.query_one("#upload-progress", Static)
        widget.display = True
        lines = [headline]
        if total:
            bar = progress_bar(done, total, PROGRESS_BAR_WIDTH, done >= total)
            lines.append(f"[$accent]{bar}[/] {format_bytes(done)} / {format_bytes(total)}")
        for path, size in self.sent[-FILES_SHOWN:]:
            lines.append(f"  [$success]✔[/] {escape_markup(path)}  [$text-muted]{format_bytes(size)}[/]")
        if self.job_path is not None:
            lines.append(f"[$text-muted]job {escape_markup(self.job_path.name)}[/]")
        widget.update("\n".join(lines))

    def action_back(self) -> None:
        if self.uploading and self.job_path is not None:
            self.notify("The upload keeps going; the runs list reopens it.", title="Upload continues")
        self.dismiss()
