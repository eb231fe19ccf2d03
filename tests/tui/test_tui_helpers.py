"""The waits and readers every TUI test relies on: a wait that fails must say what it waited for and what it saw."""

from __future__ import annotations

from collections.abc import Callable
import pytest
from tui_helpers import screen_text, screen_words, wait_for, wait_for_text

from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.dialogs import MessageDialog

pytestmark = pytest.mark.anyio


async def test_a_wait_returns_the_conditions_value_and_treats_errors_as_not_yet(
    make_app: Callable[..., HereticApp],
) -> None:
    app = make_app()
    calls = []

    def condition() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise LookupError("not mounted yet")
        return "ready"

    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, condition, "the condition") == "ready"
        assert len(calls) == 3


async def test_a_wait_that_times_out_names_what_it_awaited_and_what_it_saw(
    make_app: Callable[..., HereticApp],
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        with pytest.raises(AssertionError) as failure:
            await wait_for(pilot, lambda: app.screen.query_one("#no-such-widget"), "the missing widget", timeout=0.2)
    message = str(failure.value)
    assert message.startswith("the missing widget (waited 0.2s;")
    assert "NoMatches" in message and "the screen is HomeScreen" in message and "New abliteration run" in message


async def test_screen_words_finds_a_message_however_the_dialog_wrapped_it(
    make_app: Callable[..., HereticApp],
) -> None:
    phrase = "is not a heretic-tui run: it has no job.json, so there is nothing to attach to or resume here"
    assert len(phrase) > 70, "longer than the terminal is wide, so it must wrap"
    app = make_app()
    async with app.run_test(size=(70, 30)) as pilot:
        app.push_screen(MessageDialog("Cannot open this run", f"/tmp/{'long-folder-' * 6} {phrase}."))
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog), "the dialog")
        await wait_for(pilot, lambda: "Cannot open this run" in screen_words(app), "the dialog's title")
        assert phrase not in screen_text(app)
        assert phrase in screen_words(app)


async def test_a_wait_for_text_names_the_phrases_it_never_saw(make_app: Callable[..., HereticApp]) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        text = await wait_for_text(pilot, "New abliteration run", message="home")
        assert "New abliteration run" in text
        with pytest.raises(AssertionError) as failure:
            await wait_for_text(pilot, "New abliteration run", "no such phrase", message="home's phrases",
                                timeout=0.2)
    assert str(failure.value).startswith("home's phrases (the screen should show 'New abliteration run', "
                                         "'no such phrase') (waited 0.2s;")
