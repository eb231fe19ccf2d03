"""Fixtures of the fine-tuning tests (the helpers they use live in finetune_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One math thread, here and in workers: on a shared 2-core machine, thread oversubscription makes the tiny
    models' steps a hundred times slower (seconds instead of milliseconds), which is all the tests would measure."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
