"""``heretic-tui evaluate``: lm-eval tasks on the demo model, from a task YAML and JSONL the test writes itself.

Nothing here reaches the network: the tasks' data is local, and a task whose data is not must fail before any model
loads, with one paragraph and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from capability.harness_tasks import write_task
from heretic_tui.cli.main import main
from heretic_tui.core.capability.harness import HarnessRequest, check_tasks, parse_task_names
from heretic_tui.core.errors import EXIT_BAD_INPUT, EXIT_OK, UserInputError


def run_cli(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(arguments)
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


def accuracy(table: str, task: str) -> float:
    row = next(line for line in table.splitlines() if line.startswith(f"| {task} | acc |"))
    return float(row.split("|")[3])


def test_local_tasks_run_on_the_demo_model_and_score_what_the_model_prefers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same questions with the right answer first, then second: every question is right in exactly one of the
    two tasks, so the accuracies add up to one whatever the demo model knows (a scorer that ignored the model's
    log-likelihoods, or the targets, would not)."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_task(tasks, "pick_first", 0)
    write_task(tasks, "pick_second", 1)
    code, out, err = run_cli(["evaluate", "demo", "--tasks", "pick_first,pick_second", "--include-path", str(tasks),
                              "--batch-size", "4"], capsys)
    assert code == EXIT_OK, err
    assert "Traceback" not in err and "not an export" in err
    assert out.splitlines()[0] == "| task | metric | demo | stderr |"
    first, second = accuracy(out, "pick_first"), accuracy(out, "pick_second")
    assert first + second == pytest.approx(1.0)
    code, again, _ = run_cli(["evaluate", "demo", "--tasks", "pick_first", "--include-path", str(tasks),
                              "--batch-size", "1", "--limit", "3"], capsys)
    assert code == EXIT_OK and 0.0 <= accuracy(again, "pick_first") <= 1.0


def test_a_task_whose_data_is_not_cached_fails_before_loading_with_how_to_cache_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path, "needs_the_hub", 0, dataset_path="nobody-here/never-cached-dataset")
    code, out, err = run_cli(["evaluate", "demo", "--tasks", "needs_the_hub", "--include-path", str(tmp_path)], capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    assert "'needs_the_hub'" in err and "nobody-here/never-cached-dataset" in err and "Cache it once" in err
    assert "Traceback" not in err and "loading" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]

    write_task(tmp_path, "moved_data", 0)
    (tmp_path / "moved_data.jsonl").unlink()
    code, out, err = run_cli(["evaluate", "demo", "--tasks", "moved_data", "--include-path", str(tmp_path)], capsys)
    assert code == EXIT_BAD_INPUT and out == "" and "Traceback" not in err
    assert "data files of the lm-eval task 'moved_data'" in err and "moved_data.jsonl" in err


def test_an_unknown_task_is_named_with_the_close_names(tmp_path: Path) -> None:
    """Checked on the include path alone (indexing lm-eval's own few thousand tasks takes seconds)."""
    from lm_eval.tasks import TaskManager

    write_task(tmp_path, "pick_first", 0)
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    with pytest.raises(UserInputError, match="no task called 'pick_frist'. Close names: pick_first"):
        check_tasks(HarnessRequest(("pick_frist",), (tmp_path,)), manager)
    assert parse_task_names(" a, b,,a ") == ("a", "b")
    with pytest.raises(UserInputError, match="names no task"):
        parse_task_names(" , ")


def test_without_lm_eval_the_command_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    code, out, err = run_cli(["evaluate", "demo", "--tasks", "arc_easy"], capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    assert "not installed" in err and "pip install 'heretic-tui[eval]'" in err and "Traceback" not in err


def test_a_run_folder_needs_a_trial_and_a_trial_needs_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "job.json").write_text("{}", encoding="utf-8")
    code, _, err = run_cli(["evaluate", str(run), "--tasks", "x"], capsys)
    assert code == EXIT_BAD_INPUT and "--trial N" in err
    code, _, err = run_cli(["evaluate", "demo", "--trial", "2", "--tasks", "x"], capsys)
    assert code == EXIT_BAD_INPUT and "needs MODEL to be an abliteration run folder" in err


def test_an_export_whose_source_model_is_gone_says_to_skip_the_original(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from heretic_tui.core.models.loading import resolve_model_location

    folder = tmp_path / "export"
    shutil.copytree(resolve_model_location("demo"), folder)
    (folder / "heretic.json").write_text(json.dumps({"source_model": str(tmp_path / "deleted-model")}),
                                         encoding="utf-8")
    write_task(tmp_path, "pick_first", 0)
    code, out, err = run_cli(["evaluate", str(folder), "--tasks", "pick_first", "--include-path", str(tmp_path)],
                             capsys)
    assert code == EXIT_BAD_INPUT and out == "" and "Traceback" not in err
    assert "deleted-model" in err and "--skip-original" in err
