"""How numbers, durations and times read on screen, so every screen says "3m 12s" the same way."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.text import Text

from heretic_tui.core.api import STATUS_CANCELLED, STATUS_FAILED, STATUS_FINISHED, STATUS_RUNNING

STATUS_COLORS: dict[str, str] = {
    STATUS_RUNNING: "accent",
    STATUS_FINISHED: "success",
    STATUS_FAILED: "error",
    STATUS_CANCELLED: "warning",
    "missing": "error",
}
"""Theme colour of each run status (Textual theme variable names)."""
STATUS_SYMBOLS: dict[str, str] = {
    STATUS_RUNNING: "▶",
    STATUS_FINISHED: "✔",
    STATUS_FAILED: "✘",
    STATUS_CANCELLED: "■",
    "missing": "?",
}


def format_duration(seconds: float | None) -> str:
    """Compact durations: 0.4s, 12s, 3m 12s, 2h 05m."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_timestamp(moment: float | None, *, compact: bool = False) -> str:
    """A local date and time to the minute; ``compact`` drops the year, for table columns."""
    if not moment:
        return "–"
    return time.strftime("%m-%d %H:%M" if compact else "%Y-%m-%d %H:%M", time.localtime(moment))


def format_kl(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0"
    if value < 0.001:
        return f"{value:.1e}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def format_refusals(refusals: int | None, total: int | None) -> str:
    if refusals is None:
        return "–"
    return f"{refusals}/{total}" if total else str(refusals)


def format_parameter_count(count: int | None) -> str:
    if count is None:
        return "?"
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= threshold:
            return f"{count / threshold:.1f}{suffix}"
    return str(count)


def format_memory(used: float, total: float) -> str:
    """``12.0/64.0 GB``: both figures in the total's unit, short enough for a narrow side panel."""
    unit, scale = "B", 1.0
    for candidate in ("KB", "MB", "GB", "TB"):
        if total / (scale * 1024) < 1:
            break
        unit, scale = candidate, scale * 1024
    return f"{used / scale:.1f}/{total / scale:.1f} {unit}"


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def format_bytes(size: float | None) -> str:
    if size is None:
        return "–"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def status_markup(status: str) -> str:
    """The run status as Textual content markup, with its symbol and colour."""
    color = STATUS_COLORS.get(status)
    style = f"bold ${color}" if color else "bold"
    return f"[{style}]{STATUS_SYMBOLS.get(status, '?')} {status}[/]"


def status_text(status: str, theme: Mapping[str, str]) -> Text:
    """The run status as a Rich Text for table cells (which take Rich, not Textual, markup)."""
    color = theme.get(STATUS_COLORS.get(status, ""), "")
    return Text(f"{STATUS_SYMBOLS.get(status, '?')} {status}", style=f"bold {color}".strip())


def colored_text(text: str, theme: Mapping[str, str], variable: str) -> Text:
    """Plain text in one theme colour, for table cells."""
    return Text(text, style=theme.get(variable, ""))


def escape_markup(text: str) -> str:
    """Make arbitrary text (log lines, paths, error messages) safe to embed in content markup."""
    return text.replace("[", "\\[")


def short_model_name(model: str) -> str:
    """A local path shows as its last folder (the rest is in the detail pane); hub ids and 'demo' stay whole."""
    if model.startswith(("/", "~", ".")) or "\\" in model:
        return model.rstrip("/\\").replace("\\", "/").split("/")[-1] or model
    return model
