"""Errors a user can fix, kept apart from bugs so every entry point can show them as one clear paragraph."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


class UserInputError(Exception):
    """A problem with what the user gave us (file, key, value); the message names it and says how to fix it.

    Entry points print the message without a traceback and exit with EXIT_BAD_INPUT, because a traceback
    for a typo in a config file hides the one line that matters.
    """

    exit_code = EXIT_BAD_INPUT


class JobCancelled(Exception):
    """Raised inside the worker when a graceful cancel was requested, so the pipeline can unwind cleanly."""
