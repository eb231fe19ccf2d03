"""Where the test suite keeps its user cache, so the demo model is trained once per checkout and then reused."""

from __future__ import annotations

from pathlib import Path

SHARED_CACHE = (Path(__file__).resolve().parent.parent / ".test-cache").resolve()
