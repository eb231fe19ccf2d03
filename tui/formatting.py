"""How numbers, durations and times read on screen, so every screen says "3m 12s" the same way.

Sizes use ``rich.filesize``: files in decimal units (what the Hub shows and ``output.shard_size`` means), memory in
binary units (what RAM and GPU memory are sold and reported in), each labelled as what it is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.filesize import decimal, pick_unit_and_suffix
from rich.text import Text

from heretic_tui.core.api import (
    STATUS_CANCELLED,
    STATUS_DAMAGED,
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_MISSING,
    STATUS_RUNNING,
)

STATUS_COLORS: dict[str, str] = {
    STATUS_RUNNING: "accent",
    STATUS_FINISHED: "success",
    STATUS_FAILED: "error",
    STATUS_CANCELLED: "warning",
    STATUS_DAMAGED: "error",
    STATUS_MISSING: "error",
}
"""Theme colour of each run status (Textual theme variable names)."""
STATUS_SYMBOLS: dict[str, str] = {
    STATUS_RUNNING: "▶",
    STATUS_FINISHED: "✔",
    STATUS_FAILED: "✘",
    STATUS_CANCELLED: "■",
    STATUS_DAMAGED: "⚠",
    STATUS_MISSING: "?",
}


MEMORY_UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"]


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


def format_figure(value: Any, digits: int = 4) -> str:
    """Any figure a job reports, rounded to ``digits`` significant digits: 0.04213 is 0.04213, 12.3456 is 12.35."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if value is None:
        return "–"
    return str(value)


FIGURE_LABELS: dict[str, str] = {
    "kl_vs_first": "KL vs model 1",
    "perplexity": "perplexity on held-out text",
}
"""What the figures jobs report are, in words: a comparison's KL is measured against its first model (the
original), which is not the KL a trial was scored with during the study."""


REFERENCE_MODEL_PREFIX = "model 1/"
"""A comparison names its figures ``model i/n label``; the first model is the reference the others' KL is
measured against."""


def describe_figure(key: str, value: Any) -> str:
    """``label value`` for one reported figure; KL values read like the study's (``format_kl``)."""
    label = FIGURE_LABELS.get(key, key.replace("_", " "))
    if key.startswith("kl") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{label} {format_kl(float(value))}"
    return f"{label} {format_figure(value)}"


def describe_figures(name: str, values: Mapping[str, Any]) -> str:
    """A job's named set of figures (a ``Metrics`` event), each with its meaning, as plain text."""
    figures = []
    for key, value in values.items():
        if key == "kl_vs_first" and name.startswith(REFERENCE_MODEL_PREFIX):
            figures.append("the KL reference")
        else:
            figures.append(describe_figure(str(key), value))
    return ", ".join(figures)


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
    """``12.0/64.0 GiB``: both figures in the total's unit, short enough for a narrow side panel."""
    unit, suffix = pick_unit_and_suffix(max(1, int(total)), MEMORY_UNITS, 1024)
    return f"{used / unit:.1f}/{total / unit:.1f} {suffix}"


def format_memory_size(size: float) -> str:
    """One amount of memory (a process's RAM) in the same binary units as :func:`format_memory`."""
    unit, suffix = pick_unit_and_suffix(max(1, int(size)), MEMORY_UNITS, 1024)
    return f"{size / unit:.1f} {suffix}"


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def format_bytes(size: float | None) -> str:
    """A file or folder size in decimal units (``6.5 kB``, ``16.1 GB``), as the Hub and ``output.shard_size`` count."""
    if size is None:
        return "–"
    return decimal(int(size))


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
