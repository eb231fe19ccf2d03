"""The advanced form of a wizard: one :class:`SettingEditor` per setting, grouped under section titles.

Both wizards (abliteration and fine-tuning) show every setting of the sections their job reads, with its help,
default and inline validation; building that list here keeps the two forms identical in look and behaviour, and a
setting added to the core appears in whichever wizard shows its section without touching either screen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from textual.widgets import Static

from heretic_tui.core.settings import SettingField, setting_fields
from heretic_tui.tui.field_checks import FIELD_CHECKS
from heretic_tui.tui.widgets.setting_editor import SettingEditor

FORM_INTRO = ("[b]The settings this job reads[/b], grouped as in config.toml. Invalid values are marked and block "
              "the summary. ctrl+↓ / ctrl+↑ jump to the next or previous section.")


def section_title_id(section: str) -> str:
    return f"section-{section}"


def setting_form(
    values: Mapping[str, Any],
    sections: Iterable[str],
    intro: str = FORM_INTRO,
) -> list[Static | SettingEditor]:
    """Section titles and editors for the settings of ``sections``, filled from ``values``.

    ``values`` maps ``section.name`` to the current typed value; the editors post ``SettingEditor.Changed``
    which the screen folds back into the same mapping. Settings with a check of their own (a model path) get it.
    """
    wanted = set(sections)
    widgets: list[Static | SettingEditor] = [Static(intro, classes="hint")]
    section = None
    for spec in setting_fields():
        if spec.section not in wanted:
            continue
        if spec.section != section:
            section = spec.section
            widgets.append(Static(f"[b]\\[{section}][/b]", classes="section-title", id=section_title_id(section)))
        widgets.append(SettingEditor(spec, values[spec.key], FIELD_CHECKS.get(spec.key)))
    return widgets


def field_spec(key: str) -> SettingField:
    """The core's description of one setting, by its ``section.name`` key."""
    return next(spec for spec in setting_fields() if spec.key == key)
