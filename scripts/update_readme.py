"""Regenerate the generated parts of the repository from core/settings.py: config.toml and the README's table."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from heretic_tui.core.settings import render_config, render_markdown_reference  # noqa: E402

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def readme_with_reference(text: str) -> str:
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{render_markdown_reference()}{END}{after}"


def main() -> None:
    (ROOT / "config.toml").write_text(render_config(), encoding="utf-8")
    readme = ROOT / "README.md"
    readme.write_text(readme_with_reference(readme.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
