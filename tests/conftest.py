"""Shared fixtures: an isolated home for every test (no real user folders, no Hub access) and tiny models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TQDM_DISABLE", "1")

from shared_cache import SHARED_CACHE  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point user data/config folders at a temporary home; the cache (demo model) is shared by the session."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(SHARED_CACHE))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    for variable in list(os.environ):
        if variable.startswith("HERETIC_"):
            monkeypatch.delenv(variable)
    monkeypatch.chdir(home)
    return home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from model_factory import ARCHITECTURES, build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build_tiny_model(name, root / name) for name in ARCHITECTURES}
