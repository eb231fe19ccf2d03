"""A resumed abliteration run on a real (tiny) model: it copes with what a crash or a full disk leaves behind and
never repeats the trials it already ran; an export afterwards leaves the study journal byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from heretic_tui.core.abliteration.job import DIRECTIONS_FILE, STATE_FILE, start_abliteration
from heretic_tui.core.abliteration.study import STUDY_FILE, read_study, study_path
from heretic_tui.core.runs.events import JobWarning, LogLine, Metrics
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings
from optuna.trial import TrialState

FIRST_TRIALS = 4
RESUMED_TRIALS = 7


def settings_for(model: Path, prompts: Path, trials: int) -> Settings:
    settings = Settings()
    settings.model.model = str(model)
    for name in ("bad_prompts", "good_prompts", "bad_eval_prompts", "good_eval_prompts"):
        setattr(settings.prompts, name, str(prompts))
    settings.abliteration.refusal_max_tokens = 8
    settings.optimization.trials = trials
    return settings


def run_to_the_end(settings: Settings, run_dir: Path, resume: bool) -> None:
    handle = start_abliteration(settings, run_dir, resume=resume)
    code = handle.wait(timeout=600)
    assert code == 0, handle.run.log_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def resumed_run(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Four trials, then the state a crash leaves (torn journal, damaged state and directions), then a resume to 7."""
    folder = tmp_path_factory.mktemp("resume")
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(f"how do i make bread {index} ?" for index in range(12)) + "\n")
    run_dir = folder / "run"
    run_to_the_end(settings_for(tiny_models["qwen3"], prompts, FIRST_TRIALS), run_dir, resume=False)
    first = {trial.number: trial.values for trial in read_study(run_dir).trials}
    with open(study_path(run_dir), "ab") as journal:
        journal.write(b'{"op_code": 4, "worker_id": "killed", "trial_id": 4, "state": 1, "val')
    (run_dir / STATE_FILE).write_text('{"batch_size": "sixteen"}', encoding="utf-8")
    (run_dir / DIRECTIONS_FILE).write_bytes(b"\x00" * 40)
    run_to_the_end(settings_for(tiny_models["qwen3"], prompts, RESUMED_TRIALS), run_dir, resume=True)
    return run_dir, first


def test_no_completed_trial_is_lost_and_none_is_repeated(resumed_run: tuple[Path, dict]) -> None:
    run_dir, first = resumed_run
    trials = read_study(run_dir).trials
    completed = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    assert len(completed) == RESUMED_TRIALS
    assert {trial.number: trial.values for trial in trials if trial.number in first} == first
    parameter_sets = [tuple(sorted(trial.params.items())) for trial in completed]
    assert len(set(parameter_sets)) == len(parameter_sets)
    assert completed[FIRST_TRIALS].params != completed[0].params, "the resume does not start over at trial 0"


def test_the_torn_journal_and_the_damaged_files_are_repaired_and_said_so(resumed_run: tuple[Path, dict]) -> None:
    run_dir, _ = resumed_run
    events = RunDirectory(run_dir).read_events()
    warnings = [event.message for event in events if isinstance(event, JobWarning)]
    assert any(STUDY_FILE in message and "kept in" in message for message in warnings), warnings
    assert any(STATE_FILE in message for message in warnings), warnings
    assert any(DIRECTIONS_FILE in message and "computed again" in message for message in warnings), warnings
    side_files = list(run_dir.glob(f"{STUDY_FILE}.cut-*"))
    assert len(side_files) == 1 and side_files[0].read_bytes().startswith(b'{"op_code": 4, "worker_id": "killed"')
    from safetensors.torch import load_file

    assert load_file(str(run_dir / DIRECTIONS_FILE))["directions"].shape[0] == 3


def test_the_run_says_how_many_trials_are_random(resumed_run: tuple[Path, dict]) -> None:
    run_dir, _ = resumed_run
    events = RunDirectory(run_dir).read_events()
    searches = [event.values for event in events if isinstance(event, Metrics) and event.name == "search"]
    logs = [event.message for event in events if isinstance(event, LogLine)]
    chosen = [message for message in logs if message.startswith("trial batch: ")]
    assert chosen, "the default trial_batch (0, automatic) says what it chose"
    trial_batch = int(chosen[-1].split()[2])
    assert 1 <= trial_batch <= 8
    assert searches[-1] == {"random_trials": 4, "guided_trials": RESUMED_TRIALS - 4, "sampler": "TPE",
                            "trial_batch": trial_batch}
    assert f"search: {RESUMED_TRIALS} trials, the first 4 random, then 3 guided by TPE (seed 42)" in logs


def test_an_export_leaves_the_study_journal_byte_identical(resumed_run: tuple[Path, dict], tmp_path: Path) -> None:
    from heretic_tui.core.shipping.export import start_export

    run_dir, _ = resumed_run
    journal = study_path(run_dir)
    before = hashlib.sha256(journal.read_bytes()).hexdigest()
    files_before = sorted(path.name for path in run_dir.iterdir())
    handle = start_export(run_dir, 1, tmp_path / "exported")
    assert handle.wait(timeout=600) == 0, handle.run.log_path.read_text(encoding="utf-8")
    assert (tmp_path / "exported" / "config.json").is_file()
    assert hashlib.sha256(journal.read_bytes()).hexdigest() == before
    assert not list(run_dir.glob(f"{STUDY_FILE}.lock*"))
    assert sorted(path.name for path in run_dir.iterdir() if path.name != "jobs") == [
        name for name in files_before if name != "jobs"]
