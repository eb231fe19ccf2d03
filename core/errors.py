"""Errors a user can act on, kept apart from bugs, and the one table of exit codes every entry point uses.

An entry point (the command line, the worker) shows such an error as one paragraph without a traceback and exits
with the error's ``exit_code``: a traceback for a typo in a config file, a full disk or an unreachable Hub hides
the one line that matters. Anything else is a bug or a model that cannot run, and keeps its traceback in the log.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STORAGE = 3
EXIT_NETWORK = 4
EXIT_CANCELLED = 130


@dataclass(frozen=True)
class ExitCode:
    code: int
    meaning: str


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "success"),
    ExitCode(EXIT_FAILED, "the job failed (a bug, a model that cannot run, out of memory); worker.log has the cause. "
                          "doctor: a check found a problem; plan: the model does not fit"),
    ExitCode(EXIT_BAD_INPUT, "bad input (a file, key or value to fix) or a run folder another worker holds; "
                             "nothing was written"),
    ExitCode(EXIT_STORAGE, "a folder could not be written (disk full, read-only, no permission), or the study's "
                           "database (--storage) failed or cannot be reached; free space, fix the permission or "
                           "bring the database back, then resume"),
    ExitCode(EXIT_NETWORK, "the Hugging Face Hub or the network failed (refused, unreachable, timed out, HTTP "
                           "error); check the connection and the token, then run it again"),
    ExitCode(EXIT_CANCELLED, "cancelled (Ctrl-C or cancel); completed work is saved and the run can be resumed"),
)
"""The documented exit codes, in the order the README and ``--help`` list them."""


def exit_codes_text(width: int = 79) -> str:
    """The table as plain lines wrapped to ``width`` with a hanging indent, for the ``--help`` epilog."""
    lines = ["Exit codes:"]
    for item in EXIT_CODES:
        lines += textwrap.wrap(item.meaning, width, initial_indent=f"  {item.code:<5d}", subsequent_indent=" " * 7)
    return "\n".join(lines)


class HereticError(Exception):
    """Base of every error the user can act on; the message names the file, key or value and the fix."""

    exit_code = EXIT_FAILED


class UserInputError(HereticError):
    """A problem with what the user gave us (file, key, value); nothing was written because of it."""

    exit_code = EXIT_BAD_INPUT


class StorageError(HereticError):
    """A folder or file could not be written (no space, read-only, permission); the work so far is kept."""

    exit_code = EXIT_STORAGE


class NetworkError(HereticError):
    """The Hub or another remote service failed: refused, unreachable, timed out, or an HTTP error status."""

    exit_code = EXIT_NETWORK


class JobCancelled(Exception):
    """Raised inside the worker when a graceful cancel was requested, so the pipeline can unwind cleanly."""
