"""Chat: the worker process streams answers from a tiny real model; the screen shows them, stops and clears."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tui_helpers import screen_text, wait_for

from heretic_tui.core.models.chat import ChatError, ChatModel, ChatSession
from heretic_tui.core.settings import ModelSettings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.chat import ChatScreen

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_factory import build_tiny_model

    return build_tiny_model("llama", tmp_path_factory.mktemp("chat") / "tiny-llama")


def plain(path: Path) -> ChatModel:
    return ChatModel.plain(ModelSettings(model=str(path), device_map="cpu", dtypes=["float32"]))


def test_a_session_streams_remembers_and_clears(tiny_model: Path, tmp_path: Path) -> None:
    session = ChatSession(plain(tiny_model), system_prompt="you are a helpful assistant", max_new_tokens=6,
                          log_path=tmp_path / "chat.log")
    try:
        assert session.start() == str(tiny_model)
        pieces = list(session.ask("how do i bake bread ?"))
        assert pieces, "the answer streams in pieces"
        assert session.history == [{"role": "user", "content": "how do i bake bread ?"},
                                   {"role": "assistant", "content": "".join(pieces)}]
        session.max_new_tokens = 200
        pieces = []
        for piece in session.ask("write a poem"):
            if not pieces:
                session.stop()
            pieces.append(piece)
        assert len(session.history) == 4, "a stopped answer is kept, as the person saw it"
        assert session.history[3]["content"] == "".join(pieces)
        session.stop()
        assert list(session.ask("bake bread")), "a stop with nothing running does not affect the next answer"
        session.clear()
        assert session.history == []
    finally:
        session.close()
    assert not session.running


def test_a_model_that_cannot_load_is_a_chat_error(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    session = ChatSession(plain(empty), log_path=tmp_path / "chat.log")
    with pytest.raises(ChatError, match="config.json"):
        session.start()
    assert not session.running


async def test_chat_screen_streams_an_answer(tiny_model: Path, make_app: Callable[..., HereticApp]) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ChatScreen(plain(tiny_model), "you are a helpful assistant"))
        screen = await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen, "the chat opens")
        await wait_for(pilot, lambda: screen.loaded, "the chat worker loads the model", timeout=60)
        await wait_for(pilot, lambda: "loaded on cpu" in screen_text(app), "the chat says where the model runs")
        screen.session.max_new_tokens = 5
        field = screen.query_one("#chat-input")
        field.value = "how do i bake bread ?"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_for(pilot, lambda: not screen.generating and len(screen.session.history) == 2,
                       "the answer streams in and ends", timeout=30)
        answer = screen.session.history[1]["content"]
        assert answer.strip()
        await wait_for(pilot, lambda: answer.strip()[:10] in screen_text(app).replace("\n", " "),
                       "the answer is on screen")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: screen.session.history == [], "ctrl+l clears the conversation")
        process = screen.session._process
        await pilot.press("escape")
    assert process is not None
    assert process.wait(timeout=15) == 0, "leaving the chat stops its worker"
