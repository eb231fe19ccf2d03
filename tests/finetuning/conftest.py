"""Fixtures of the fine-tuning tests (the helpers they use live in finetune_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_helpers import FACTS, MARKED_CHAT_TEMPLATE, build_model, write_pdf


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("finetune-model") / "model")


@pytest.fixture(scope="session")
def marked_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("finetune-marked-model") / "model", MARKED_CHAT_TEMPLATE)


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    """A mixed folder: a text file, a Markdown file in a sub-folder and a generated PDF."""
    folder = tmp_path / "documents"
    (folder / "notes").mkdir(parents=True)
    (folder / "zorbia.txt").write_text(" ".join(FACTS * 6), encoding="utf-8")
    (folder / "notes" / "quellton.md").write_text("# Quellton\n\n" + " ".join(reversed(FACTS * 4)), encoding="utf-8")
    write_pdf(folder / "lumen.pdf", FACTS)
    return folder
