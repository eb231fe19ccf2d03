"""Settings: one declaration, layered loading, and errors that name the key, the value and the fix."""

from __future__ import annotations

import errno
import os
import tomllib
from pathlib import Path

import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.settings import (
    Settings,
    load_settings,
    overrides_from_text,
    parse_text_value,
    render_config,
    save_config,
    setting_fields,
    settings_from_dict,
    settings_to_dict,
    validate_value,
)

ROOT = Path(__file__).resolve().parent.parent


def test_root_config_is_current() -> None:
    assert (ROOT / "config.toml").read_text(encoding="utf-8") == render_config(), (
        "config.toml is out of date: run .venv/bin/python scripts/update_readme.py"
    )


def comment_blocks(text: str) -> dict[str, str]:
    """``section.name`` -> the comment lines directly above that key in a config file, joined into one text."""
    blocks: dict[str, str] = {}
    section = ""
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section, comments = stripped.strip("[]"), []
        elif stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
        elif "=" in stripped and not stripped.startswith(("\"", "'")):
            blocks[f"{section}.{stripped.split('=', 1)[0].strip()}"] = " ".join(comments)
            comments = []
        elif not stripped:
            comments = []
    return blocks


def test_root_config_sets_every_setting_to_its_default_under_its_help() -> None:
    """Read the shipped file as a user would: each key in its section, at its default, its help just above it."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    document = tomllib.loads(text)
    fields = list(setting_fields())
    assert {section: sorted(values) for section, values in document.items()} == {
        section: sorted(spec.name for spec in fields if spec.section == section)
        for section in dict.fromkeys(spec.section for spec in fields)
    }
    blocks = comment_blocks(text)
    for spec in fields:
        assert document[spec.section][spec.name] == spec.default, spec.key
        assert " ".join(spec.help.split()) in blocks[spec.key], spec.key
        assert spec.environment_variable in blocks[spec.key], spec.key
    assert load_settings(ROOT / "config.toml", environ={}) == Settings()


def test_setting_names_are_unique_so_environment_variables_are_unambiguous() -> None:
    names = [spec.name for spec in setting_fields()]
    assert len(names) == len(set(names))


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[optimization]\ntrials = 7\nseed = 3\nstartup_trials = 60\n[prompts]\nsystem_prompt = 'from file'\n")
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
        ("[model]\nquantization = '3bit'\n", r"'3bit'.*model.quantization.*'none', '4bit', '8bit'"),
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


FLOAT_KEYS = [spec.key for spec in setting_fields() if spec.type is float]


def test_there_are_float_settings_to_check() -> None:
    assert {"finetune.learning_rate", "optimization.choice_max_kl", "finetune.epochs"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_for_every_float_from_every_source(tmp_path: Path, key: str,
                                                                     text: str) -> None:
    section, name = key.split(".")
    spec = next(item for item in setting_fields() if item.key == key)
    pattern = rf"for '{key}' is not valid \(not a finite number\)"
    config = tmp_path / "config.toml"
    config.write_text(f"[{section}]\n{name} = {text}\n")
    with pytest.raises(UserInputError, match=pattern) as raised:
        load_settings(config, environ={})
    assert str(config) in str(raised.value)
    with pytest.raises(UserInputError, match=rf"{spec.environment_variable}.*{pattern}"):
        load_settings(None, environ={spec.environment_variable: text}, search_default_paths=False)
    with pytest.raises(UserInputError, match=rf"Command line.*{pattern}"):
        overrides_from_text({key: text})
    with pytest.raises(UserInputError, match=rf"Wizard.*{pattern}"):
        settings_from_dict({section: {name: float(text)}}, origin="Wizard")
    with pytest.raises(UserInputError, match=pattern):
        validate_value(spec, parse_text_value(spec, text, "Wizard"), "Wizard")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[model]]\nmodel = 'demo'\n", "'[[model]]' declares an array of tables, but each section is one table. "
                                        "Write '[model]' (single brackets, once) and its keys (model) below it."),
        ("model = 'demo'\n", "'model = \"demo\"' stands outside any section, but each setting belongs in its "
                             "section's table. Write a line '[model]' above it, so the file reads '[model]' then "
                             "'model = \"demo\"' (the setting 'model.model')."),
        ("trials = 5\n[model]\nmodel = 'demo'\n", "Write a line '[optimization]' above it, so the file reads "
                                                  "'[optimization]' then 'trials = 5'"),
        ("optimization = 5\n", "'optimization' must be a table of settings, not a single value. Write "
                               "'[optimization]' on a line of its own"),
    ],
)
def test_a_misplaced_section_shows_the_right_form(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(UserInputError) as raised:
        load_settings(config, environ={})
    message = str(raised.value)
    assert message.startswith(f"Config file {config}: ") and expected in message, message
    assert "\n" not in message


def test_a_config_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=rf"Config file {tmp_path} is a folder, not a file\. Pass the path"):
        load_settings(tmp_path, environ={})
    (tmp_path / "config.toml").write_text("[optimization]\ntrials = 4\n")
    with pytest.raises(UserInputError, match=rf"It holds a config\.toml: pass {tmp_path / 'config.toml'}\."):
        load_settings(tmp_path, environ={})
    with pytest.raises(UserInputError, match=rf"{tmp_path} \(from HERETIC_CONFIG\) is a folder"):
        load_settings(None, environ={"HERETIC_CONFIG": str(tmp_path)})


def test_an_unreadable_config_file_says_why_and_how_to_fix_it(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[optimization]\ntrials = 4\n")
    config.chmod(0)
    if os.access(config, os.R_OK):
        # Root reads any file whatever its mode: make the read fail the way it fails for everyone else.
        original = Path.read_text

        def refuse(path: Path, *arguments: object, **options: object) -> str:
            if path == config:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return original(path, *arguments, **options)

        monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(UserInputError, match=rf"Config file {config} cannot be read: permission denied\. Make it "
                                             r"readable \(e\.g\. `chmod u\+r"):
        load_settings(config, environ={})


def test_a_config_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b"[optimization]\ntrials = 4 # caf\xe9\n")
    with pytest.raises(UserInputError, match=rf"{config} is not UTF-8 text \(byte 0xe9 at offset 31\)"):
        load_settings(config, environ={})
