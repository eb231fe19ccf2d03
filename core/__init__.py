"""The headless core of heretic-tui: settings, pipelines, worker jobs and their event stream (never imports Textual)."""

__version__ = "0.1.0"
