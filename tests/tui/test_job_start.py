"""The one way a screen starts a job from a thread worker: the result reaches ``started`` on the app's thread, and
a failure reaches ``failed`` as the paragraph a user reads (a HereticError's own text, anything else by its type)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from textual.app import App
from tui_helpers import wait_for

from heretic_tui.core.errors import StorageError, UserInputError
from heretic_tui.tui.screens.base import failure_message, start_from_thread


def test_a_heretic_error_is_its_own_paragraph_and_anything_else_is_named_by_its_type() -> None:
    assert failure_message(UserInputError("config.toml: 'trials' must be a whole number.")) == (
        "config.toml: 'trials' must be a whole number.")
    assert failure_message(StorageError("The disk is full.")) == "The disk is full."
    assert failure_message(KeyError("model")) == "KeyError: 'model'"


def refused() -> str:
    raise UserInputError("The model folder has no config.json.")


def broken() -> str:
    raise ZeroDivisionError("division by zero")


@pytest.mark.anyio
@pytest.mark.parametrize("start,expected", [
    (lambda: "handle", ("started", "handle")),
    (refused, ("failed", "The model folder has no config.json.")),
    (broken, ("failed", "ZeroDivisionError: division by zero")),
])
async def test_the_outcome_of_a_start_in_a_thread_reaches_the_app_thread(
        start: Callable[[], Any], expected: tuple[str, str]) -> None:
    outcomes: list[tuple[str, Any, bool]] = []
    app: App[None] = App()
    async with app.run_test() as pilot:
        main = threading.current_thread()

        def record(kind: str) -> Callable[[Any], None]:
            return lambda value: outcomes.append((kind, value, threading.current_thread() is main))

        app.run_worker(lambda: start_from_thread(app, start, record("started"), record("failed")), thread=True)
        await wait_for(pilot, lambda: outcomes, "the start's outcome")
    assert outcomes == [(*expected, True)]
