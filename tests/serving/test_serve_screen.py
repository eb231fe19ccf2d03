"""The serve screen starts the serve job with the models, address and port typed in, and opens its dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serving_helpers import Server
from tui_helpers import FixedResourceProbe, screen_text, wait_for

from heretic_tui.core.runs.handle import JobHandle
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.dialogs import MessageDialog
from heretic_tui.tui.screens.job_dashboard import JobDashboard
from heretic_tui.tui.screens.serve import ServeScreen

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_with(tmp_path: Path) -> HereticApp:
    settings = Settings()
    settings.output.runs_directory = str(tmp_path / "runs")
    return HereticApp(settings=settings, resource_probe=FixedResourceProbe())


async def test_the_typed_models_and_port_start_the_job_and_its_dashboard_opens(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def start(models: list[str], settings: Settings, run_dir: Any = None, *, host: str | None = None,
              port: int | None = None) -> JobHandle:
        calls.append({"models": models, "host": host, "port": port})
        return JobHandle(RunDirectory(server.run_dir))

    monkeypatch.setattr("heretic_tui.core.serving.job.start_serve", start)
    app = app_with(tmp_path)
    async with app.run_test(size=(140, 40)) as pilot:
        app.open_serve()
        await wait_for(pilot, lambda: isinstance(app.screen, ServeScreen) and app.screen.query_one("#serve-port"),
                       "the serve screen")
        app.screen.query_one("#serve-models").value = "base=demo abliterated=/runs/x#3"
        app.screen.query_one("#serve-port").value = "0"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, JobDashboard), "the server's dashboard")
        assert calls == [{"models": ["base=demo", "abliterated=/runs/x#3"], "host": "127.0.0.1", "port": 0}]


async def test_an_address_beyond_loopback_without_a_key_is_explained(tmp_path: Path) -> None:
    app = app_with(tmp_path)
    async with app.run_test(size=(140, 40)) as pilot:
        app.open_serve()
        await wait_for(pilot, lambda: isinstance(app.screen, ServeScreen) and app.screen.query_one("#serve-port"),
                       "the serve screen")
        app.screen.query_one("#serve-host").value = "0.0.0.0"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and "HERETIC_SERVE_API_KEY" in
                       screen_text(app), "the refusal, naming the key setting", timeout=60)
        assert not (tmp_path / "runs").exists()
