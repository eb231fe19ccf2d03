"""What the serving tests share: the session server's description and its key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

API_KEY = "test-key-" + "x" * 24
"""The key the session's server is started with (through HERETIC_SERVE_API_KEY, as the README advises)."""


@dataclass(frozen=True)
class Server:
    url: str
    run_dir: Path
    study_dir: Path
    chosen_trial: int
    chosen_refusal_rate: float

    def client(self, api_key: str = API_KEY, **options: object) -> object:
        import openai

        return openai.OpenAI(base_url=self.url, api_key=api_key, max_retries=0, timeout=120, **options)



def read_events(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
