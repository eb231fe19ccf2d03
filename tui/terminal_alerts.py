"""The escape sequences that make a terminal ring and show a desktop notification when a followed run ends.

A run takes hours and the person is in another window: the bell marks the tab, and an OSC 9 (iTerm2, Windows
Terminal, WezTerm, kitty, Ghostty) or OSC 777 (VTE terminals such as GNOME Terminal, foot, urxvt) notification
reaches the desktop. Terminals ignore the sequence they do not know, so both are sent. Inside tmux they are wrapped
for its passthrough (which tmux 3.3+ forwards with ``set -g allow-passthrough on``); without it tmux still shows
the bell. Textual has ``App.bell`` but no notification API, hence this module.
"""

from __future__ import annotations

import re

BELL = "\a"
OSC = "\x1b]"
STRING_TERMINATOR = "\x1b\\"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
LONGEST_TEXT = 200


def clean(text: str) -> str:
    """Text safe inside an OSC string: no control characters (an ESC or BEL would end it early), short."""
    return CONTROL_CHARACTERS.sub(" ", text).strip()[:LONGEST_TEXT]


def tmux_passthrough(sequence: str) -> str:
    """Wrap a sequence so tmux hands it to the outer terminal: DCS tmux; with every ESC doubled."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + STRING_TERMINATOR


def terminal_alert(title: str, body: str, *, inside_tmux: bool = False) -> str:
    """The bell, then the same notification as OSC 9 (body only) and OSC 777 (title and body)."""
    title, body = clean(title), clean(body)
    osc_777_title = title.replace(";", ",")
    notifications = [
        f"{OSC}9;{title}: {body}{STRING_TERMINATOR}",
        f"{OSC}777;notify;{osc_777_title};{body}{STRING_TERMINATOR}",
    ]
    if inside_tmux:
        notifications = [tmux_passthrough(sequence) for sequence in notifications]
    return BELL + "".join(notifications)
