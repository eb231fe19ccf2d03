"""The phases of a job as a compact list: one line each with a bar, a count and the time it took (or is taking)."""

from __future__ import annotations

from textual.widgets import Static

from heretic_tui.core.api import STATUS_FAILED
from heretic_tui.tui.formatting import escape_markup, format_duration
from heretic_tui.tui.run_state import FINETUNE_PHASE_TITLES, PHASE_TITLES, RunState

TITLE_WIDTH = 11
COUNT_WIDTH = 7
TIME_WIDTH = 7


def progress_bar(completed: int, total: int | None, width: int, finished: bool) -> str:
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
    """Renders the phases of a :class:`RunState`; abliteration runs also list the phases still to come."""

    def show(self, state: RunState, now: float) -> None:
        width = max(self.content_size.width, 30)
        bar_width = max(0, width - 2 - TITLE_WIDTH - COUNT_WIDTH - TIME_WIDTH - 3)
        names = list(state.phases)
        titles = PHASE_TITLES
        if state.job == "abliterate" or not state.job:
            names += [name for name in PHASE_TITLES if name not in state.phases and name != "export"]
        elif state.is_finetune:
            titles = FINETUNE_PHASE_TITLES
            names += [name for name in FINETUNE_PHASE_TITLES if name not in state.phases and name != "merge"]
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
            if running and phase.step:
                step_bar = ""
                if phase.step_total:
                    step_bar = (f" [$accent]{progress_bar(phase.step_completed, phase.step_total, 10, False)}[/]"
                                f" {phase.step_completed}/{phase.step_total}")
                lines.append(f"  [$text-muted]↳ {escape_markup(phase.step)}[/]{step_bar}")
        self.update("\n".join(lines))
