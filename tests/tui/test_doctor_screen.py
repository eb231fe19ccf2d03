"""The doctor screen shows the machine's checks, run in a child process, with the fix of every line not ok."""

from __future__ import annotations

import pytest
from tui_helpers import FixedResourceProbe, screen_text, wait_for

from heretic_tui.core.operations.doctor import Check
from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.doctor import DoctorScreen

pytestmark = pytest.mark.anyio


async def test_the_doctor_screen_lists_each_check_with_its_level_and_fix(tmp_path: object) -> None:
    settings = Settings()
    settings.output.runs_directory = str(tmp_path)
    app = HereticApp(settings=settings, resource_probe=FixedResourceProbe())
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("d")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, DoctorScreen) and app.screen, "the doctor")
        checks = await wait_for(pilot, lambda: getattr(screen, "checks", None), "the checks from the child process",
                                timeout=120)
        names = [check.name for check in checks]
        assert names[0] == "Python" and "torch" in names and "Disk (runs)" in names and "Hub" in names
        assert "Terminal size" in names, "the screen hands its own terminal to the child"
        assert any(check.detail == "140x50" for check in checks)
        text = await wait_for(pilot, lambda: "Python" in screen_text(app) and screen_text(app),
                              "the checks drawn on the screen")
        assert "Doctor" in text and "ok" in text
        hub = next(check for check in checks if check.name == "Hub")
        assert hub.level == "warning" and "HF_HUB_OFFLINE" in text, "the suite is offline: a warning with its fix"


def test_a_child_that_prints_nothing_is_one_problem_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from heretic_tui.core.operations import doctor

    monkeypatch.setattr(subprocess, "run", lambda *arguments, **options: subprocess.CompletedProcess(
        arguments, 1, stdout="", stderr="Traceback ... ImportError: no torch"))
    (check,) = doctor.run_checks_apart(Settings(), doctor.TerminalFacts(True, 80, 24, "truecolor"))
    assert isinstance(check, Check) and check.level == "problem" and "ImportError: no torch" in check.detail
