"""A running server is a run like the others in the TUI: its dashboard shows the phases and the URL to call.

(tests/serving/conftest.py puts tests/tui on the import path, for tui_helpers.)
"""

from __future__ import annotations

import pytest
from serving_helpers import Server
from tui_helpers import FixedResourceProbe, screen_text, wait_for

from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.job_dashboard import JobDashboard

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_dashboard_of_a_live_server_shows_its_url_and_can_cancel(server: Server) -> None:
    settings = Settings()
    settings.output.runs_directory = str(server.run_dir.parent / "runs")
    app = HereticApp(settings=settings, resource_probe=FixedResourceProbe(), attach_run=server.run_dir)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, JobDashboard), "the server's dashboard")
        await wait_for(pilot, lambda: server.url in str(app.screen.query_one("#job-results").render()),
                       "the server's URL in its results")
        await wait_for(pilot, lambda: "Serving" in screen_text(app) and "Load models" in screen_text(app),
                       "the serve job's phases")
        assert app.screen.check_action("cancel_run", ()) is not False, "a live server can be cancelled here"
