"""``heretic-tui serve``: models behind an OpenAI-compatible chat-completions API, run as a detached job."""
