"""The phases of a job as a compact list: one line each with a bar, a count and the time it took (or is taking).

The phases and their titles are the job kind's (``JOB_KINDS`` in the core): a kind's phases that have not started
yet are listed as pending, except the optional ones (an export at the end, a merge), which only some runs have.
"""

from __future__ import annotations

from textual.widgets import Static

from heretic_tui.core.api import STATUS_FAILED
from heretic_tui.tui.formatting import escape_markup, format_duration
from heretic_tui.tui.run_state import PhaseState, RunState

TITLE_WIDTH = 11
COUNT_WIDTH = 7
TIME_WIDTH = 7
STEP_BAR_WIDTH = 10


def progress_bar(completed: float, total: float | None, width: int, finished: bool) -> str:
    """Text bar: filled with ━ in proportion; an unknown total shows a full bar once done, dots while running."""
    if width <= 0:
        return ""
    if finished:
        return "━" * width
    if not total:
        return "┄" * width
    filled = min(width, round(width * completed / total))
    return "━" * filled + "─" * (width - filled)


class PhaseList(Static):
    """Renders the phases of a :class:`RunState`, with the step in flight of the running phase under it."""

    def show(self, state: RunState, now: float) -> None:
        width = max(self.content_size.width, 30)
        bar_width = max(0, width - 2 - TITLE_WIDTH - COUNT_WIDTH - TIME_WIDTH - 3)
        kind = state.kind
        titles = kind.phase_titles if kind is not None else {}
        names = list(state.phases)
        if kind is not None:
            names += [name for name in titles if name not in state.phases and name not in kind.optional_phases]
        lines = []
        for name in names:
            phase = state.phases.get(name)
            title = titles.get(name, name)[:TITLE_WIDTH].ljust(TITLE_WIDTH)
            if phase is None:
                lines.append(f"[$text-muted]· {title}[/]")
                continue
            running = not phase.finished and state.current_phase == name and state.is_running
            if phase.finished:
                icon = "[$success]✔[/]"
            elif running:
                icon = "[$accent]▶[/]"
            elif state.status == STATUS_FAILED:
                icon = "[$error]✘[/]"
            else:
                icon = "[$warning]■[/]"
            count = f"{phase.completed}/{phase.total}" if phase.total else ""
            bar = progress_bar(phase.completed, phase.total, bar_width, phase.finished)
            elapsed = format_duration(phase.elapsed(now)) if (phase.finished or running) else ""
            bar_style = "$success" if phase.finished else "$accent"
            lines.append(
                f"{icon} {title} [{bar_style}]{bar}[/] {count.rjust(COUNT_WIDTH)} {elapsed.rjust(TIME_WIDTH)}"
            )
            if running:
                lines += self._step_lines(state, phase, now, width)
        self.update("\n".join(lines))

    @staticmethod
    def _step_lines(state: RunState, phase: PhaseState, now: float, width: int) -> list[str]:
        """What the running phase is doing now: the step the job names, else the trial in flight and how long it
        has run against the median trial (a long trial shows it is still moving, not stuck). The bar goes where
        the line leaves room for it; a narrow panel shows the words alone."""
        if phase.step:
            text = f"  ↳ {phase.step}"
            count = f" {phase.step_completed}/{phase.step_total}" if phase.step_total else ""
            bar = (progress_bar(phase.step_completed, phase.step_total, STEP_BAR_WIDTH, False)
                   if phase.step_total else "")
        else:
            in_flight = state.running_trial_seconds(now)
            if in_flight is None or state.running_trial is None:
                return []
            median = state.median_trial_seconds()
            text = f"  ↳ trial #{state.running_trial} {format_duration(in_flight)}"
            text += f" of ~{format_duration(median)}" if median else ""
            count = ""
            bar = progress_bar(min(in_flight, median), median, STEP_BAR_WIDTH, False) if median else ""
        line = f"[$text-muted]{escape_markup(text)}[/]"
        if bar and len(text) + 1 + len(bar) + len(count) <= width:
            line += f" [$accent]{bar}[/]{count}"
        elif count and len(text) + len(count) <= width:
            line += count
        return [line]

