"""Secret and private settings on disk: a secret (the server's API key) is never written by heretic-tui, whatever
source it came from; a private one (the notify command and URL) stays on this machine and never travels."""

from __future__ import annotations

from pathlib import Path

import tomlkit

from heretic_tui.core.abliteration.shared_runs import without_secrets
from heretic_tui.core.runs.lifecycle import _write_start_files
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import load_settings, render_config, save_config, setting_fields
from heretic_tui.core.shipping.model_card import shareable_config

API_KEY = "sk-test-9f8e7d6c5b4a39281706"
NOTIFY_URL = "https://alice:hunter2@ntfy.example/secret-topic-4711"
NOTIFY_COMMAND = "curl -H 'Authorization: Bearer tk_abcdef123456' https://ntfy.example/t"


def settings_from_environment():
    return load_settings(environ={"HERETIC_SERVE_API_KEY": API_KEY, "HERETIC_NOTIFY_URL": NOTIFY_URL,
                                  "HERETIC_NOTIFY_COMMAND": NOTIFY_COMMAND}, search_default_paths=False)


def test_the_secret_settings_are_the_ones_marked() -> None:
    secret = {spec.key for spec in setting_fields() if spec.secret}
    private = {spec.key for spec in setting_fields() if spec.private}
    assert "serve.serve_api_key" in secret
    assert {"notify.notify_url", "notify.notify_command"} <= private and secret <= private


def test_a_rendered_config_never_holds_a_secret() -> None:
    settings = settings_from_environment()
    assert settings.serve.serve_api_key == API_KEY, "the key itself is read from the environment"
    text = render_config(settings)
    assert API_KEY not in text
    assert tomlkit.parse(text)["serve"]["serve_api_key"] == ""


def test_a_run_folder_never_holds_a_secret_but_keeps_what_its_worker_needs(tmp_path: Path) -> None:
    """The worker reads its settings from the run's config.toml alone: the notify URL must be there, the API key
    (which reaches a server worker through its secret pipe) must not."""
    run = RunDirectory.create(tmp_path, "demo")
    _write_start_files("abliterate", settings_from_environment(), run, {}, False)
    written = run.config_path.read_text(encoding="utf-8")
    assert API_KEY not in written
    worker = load_settings(run.config_path, environ={}, search_default_paths=False)
    assert worker.notify.notify_url == NOTIFY_URL and worker.serve.serve_api_key == ""


def test_saving_settings_never_writes_a_secret(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.toml"
    save_config(settings_from_environment(), fresh)
    assert API_KEY not in fresh.read_text(encoding="utf-8")

    existing = tmp_path / "existing.toml"
    existing.write_text('[serve]\nserve_api_key = "the-users-own-key-1234"\nserve_port = 8000\n', encoding="utf-8")
    settings = settings_from_environment()
    settings.serve.serve_port = 9000
    save_config(settings, existing)
    saved = tomlkit.parse(existing.read_text(encoding="utf-8"))
    assert saved["serve"]["serve_port"] == 9000
    assert saved["serve"]["serve_api_key"] == "the-users-own-key-1234", "what the user wrote there is theirs"
    assert API_KEY not in existing.read_text(encoding="utf-8")


def test_settings_that_travel_hold_no_private_setting() -> None:
    """A model card's heretic-config.toml goes to the Hub and a shared study's settings to a database other users
    read: neither may carry the notify URL (an ntfy topic is as good as a password) or command."""
    text = render_config(settings_from_environment())
    assert NOTIFY_URL in text, "the run folder keeps it for the worker"
    card = shareable_config(text)
    shared = render_config(without_secrets(settings_from_environment()))
    for travelling in (card, shared):
        assert "secret-topic-4711" not in travelling and "hunter2" not in travelling
        assert "tk_abcdef123456" not in travelling and API_KEY not in travelling
        assert tomlkit.parse(travelling)["notify"]["notify_url"] == ""
