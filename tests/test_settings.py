"""Settings: one declaration, layered loading, and errors that name the key, the value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import (
    load_settings,
    overrides_from_text,
    render_config,
    save_config,
    setting_fields,
    settings_to_dict,
)

ROOT = Path(__file__).resolve().parent.parent


def test_root_config_lists_every_setting_with_its_help() -> None:
    assert (ROOT / "config.toml").read_text(encoding="utf-8") == render_config(), (
        "config.toml is out of date: run python -c \"from heretic_tui.core.settings import render_config; "
        "open('config.toml','w').write(render_config())\""
    )
    text = render_config()
    for spec in setting_fields():
        assert f"\n{spec.name} = " in text
        assert spec.help.split()[0] in text


def test_setting_names_are_unique_so_environment_variables_are_unambiguous() -> None:
    names = [spec.name for spec in setting_fields()]
    assert len(names) == len(set(names))


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[optimization]\ntrials = 7\nseed = 3\n[prompts]\nsystem_prompt = 'from file'\n")
    settings = load_settings(config, environ={"HERETIC_TRIALS": "9", "HERETIC_SYSTEM_PROMPT": "from env"})
    assert settings.optimization.seed == 3
    assert settings.optimization.trials == 9
    assert settings.prompts.system_prompt == "from env"
    assert settings.optimization.startup_trials == 9  # clamped to trials
    flagged = load_settings(config, environ={"HERETIC_TRIALS": "9"},
                            overrides=overrides_from_text({"optimization.trials": "11"}))
    assert flagged.optimization.trials == 11
    assert load_settings(None, environ={}, search_default_paths=False).optimization.trials == 200


def test_default_config_is_found_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text("[optimization]\ntrials = 5\n")
    assert load_settings(environ={}).optimization.trials == 5


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[optimization]\ntrails = 5\n")
    with pytest.raises(UserInputError, match=r"unknown setting 'optimization.trails'.*optimization.trials"):
        load_settings(config, environ={})
    with pytest.raises(UserInputError, match="HERETIC_TRIALS"):
        load_settings(None, environ={"HERETIC_TRAILS": "3"}, search_default_paths=False)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[optimization]\ntrials = 0\n", r"0.*optimization.trials.*too small.*from 1 to 100000"),
        ("[optimization]\ntrials = 'many'\n", r"'many'.*optimization.trials.*wrong type"),
        ("[model]\nquantization = '8bit'\n", r"'8bit'.*model.quantization.*'none', '4bit'"),
        ("[model]\ndtypes = ['float64']\n", r"float64"),
        ("[optimization\ntrials = 1\n", r"not valid TOML"),
    ],
)
def test_bad_values_name_file_key_value_and_range(tmp_path: Path, text: str, pattern: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(UserInputError, match=pattern) as caught:
        load_settings(config, environ={})
    assert str(config) in str(caught.value)


def test_environment_values_are_parsed_by_type() -> None:
    settings = load_settings(None, environ={"HERETIC_TRUST_REMOTE_CODE": "yes", "HERETIC_DTYPES": "float32,bfloat16",
                                            "HERETIC_CHOICE_MAX_KL": "0.2"}, search_default_paths=False)
    assert settings.model.trust_remote_code is True
    assert settings.model.dtypes == ["float32", "bfloat16"]
    assert settings.optimization.choice_max_kl == 0.2
    with pytest.raises(UserInputError, match="HERETIC_TRUST_REMOTE_CODE"):
        load_settings(None, environ={"HERETIC_TRUST_REMOTE_CODE": "maybe"}, search_default_paths=False)


def test_save_config_keeps_comments_and_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# my notes\n[optimization]\n# keep me\ntrials = 5\n")
    settings = load_settings(path, environ={})
    settings.optimization.trials = 12
    save_config(settings, path)
    text = path.read_text()
    assert "# my notes" in text and "# keep me" in text and "trials = 12" in text
    assert "trials = 5" in (tmp_path / "config.toml.bak").read_text()
    assert settings_to_dict(load_settings(path, environ={})) == settings_to_dict(settings)


def test_readme_config_reference_is_current() -> None:
    from heretic_tui.core.settings import render_markdown_reference

    assert render_markdown_reference() in (ROOT / "README.md").read_text(encoding="utf-8"), (
        "README.md's config reference is out of date: run python scripts/update_readme.py"
    )
