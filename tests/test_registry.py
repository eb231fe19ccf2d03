"""The registry indexes run folders (the source of truth) and never raises over a folder that went away."""

from __future__ import annotations

import json
import shutil
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import pytest

from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import (
    ArtifactWritten,
    Event,
    JobError,
    JobFinished,
    JobStarted,
    Metrics,
    TrainingStep,
    TrialFinished,
)
from heretic_tui.core.atomic_files import write_json_atomically
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.runs.registry import (
    ROLE_ABLITERATED,
    ROLE_BASE,
    ROLE_FINE_TUNED,
    STATUS_AVAILABLE,
    STATUS_EXTERNAL,
    STATUS_MISSING,
    Registry,
    default_database_path,
)
from heretic_tui.core.settings import Settings, render_config

BASE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


@dataclass
class Runs:
    """The fake history: an abliteration, an export job kept inside it, a fine-tune of the export, a failed run."""

    root: Path
    abliteration: Path
    export_job: Path
    export: Path
    fine_tune: Path
    adapter: Path
    failed: Path


def make_run(
    root: Path, name: str, kind: str, model: str, created: float, events: list[Event], report: dict | None = None
) -> Path:
    run = RunDirectory.create(root, model, exact=root / name)
    write_json_atomically(run.job_path, {"kind": kind, "arguments": {}, "created": created, "model": model})
    settings = Settings()
    settings.model.model = model
    settings.optimization.trials = 30
    run.config_path.write_text(render_config(settings), encoding="utf-8")
    with open(run.events_path, "w", encoding="utf-8") as journal:
        for item in events:
            journal.write(item.to_json() + "\n")
    write_json_atomically(run.worker_path, {"pid": 0, "exit_code": 0})
    if report is not None:
        write_json_atomically(run.report_path, report)
    return run.path


def make_model_folder(folder: Path, metadata: dict, *, adapter: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / ("adapter_config.json" if adapter else "config.json")).write_text("{}", encoding="utf-8")
    (folder / "heretic.json").write_text(json.dumps(metadata), encoding="utf-8")
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Runs:
    root = tmp_path / "runs"
    abliteration = root / "20250101-000000-qwen"
    make_run(
        root,
        abliteration.name,
        "abliterate",
        BASE_MODEL,
        1000.0,
        [
            JobStarted(job="abliterate", run_dir=str(abliteration), model=BASE_MODEL, time=1000.0),
            TrialFinished(number=12, total=30, refusals=3, refusal_total=100, kl=0.08, time=1100.0),
            JobFinished(report=str(abliteration / "report.json"), time=1101.0),
        ],
        report={"best_trial": 12, "refusals": 3, "kl": 0.08},
    )
    export_job = abliteration / "jobs" / "20250101-010000-export-trial-12"
    export = tmp_path / "exports" / "qwen-trial-12"
    make_run(
        export_job.parent,
        export_job.name,
        "export",
        BASE_MODEL,
        1500.0,
        [
            JobStarted(job="export", run_dir=str(export_job), model=BASE_MODEL, time=1500.0),
            ArtifactWritten(name="export", path=str(export), time=1600.0),
            JobFinished(report=str(export_job / "report.json"), time=1601.0),
        ],
    )
    metadata = {
        "method": "abliteration",
        "format": "merged",
        "source_model": BASE_MODEL,
        "run_dir": str(abliteration),
        "trial": 12,
    }
    make_model_folder(export, metadata)

    fine_tune = root / "20250102-000000-export-trial-12"
    adapter = tmp_path / "models" / "qwen-heretic-lora"
    make_run(
        root,
        fine_tune.name,
        "finetune",
        str(export),
        2000.0,
        [
            JobStarted(job="finetune", run_dir=str(fine_tune), model=str(export), time=2000.0),
            TrainingStep(step=10, total_steps=10, loss=1.5, time=2100.0),
            Metrics(name="evaluation", values={"perplexity": 4.2}, time=2150.0),
            ArtifactWritten(name="adapter", path=str(adapter), time=2200.0),
            ArtifactWritten(name="report", path=str(fine_tune / "report.json"), time=2201.0),
            JobFinished(report=str(fine_tune / "report.json"), time=2202.0),
        ],
        report={"final_loss": 1.5, "perplexity": 4.2},
    )
    make_model_folder(adapter, {"source_model": str(export), "run_dir": str(fine_tune), "method": "lora"}, adapter=True)

    failed = root / "20250103-000000-broken"
    make_run(
        root,
        failed.name,
        "abliterate",
        "broken/model",
        3000.0,
        [JobStarted(job="abliterate", time=3000.0), JobError(message="no such model", user_error=True, time=3001.0)],
    )
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("ignored", encoding="utf-8")
    return Runs(root, abliteration, export_job, export, fine_tune, adapter, failed)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "index" / "registry.sqlite3")


def test_rebuild_indexes_runs(registry: Registry, runs: Runs) -> None:
    registry.rebuild(runs.root)
    listed = registry.list_runs()
    assert [run.path for run in listed] == [runs.failed, runs.fine_tune, runs.export_job, runs.abliteration]
    failed, fine_tune, export_job, abliteration = listed
    assert (export_job.kind, export_job.status) == ("export", "finished")
    assert (abliteration.kind, abliteration.status, abliteration.model) == ("abliterate", "finished", BASE_MODEL)
    assert abliteration.metrics == {"best_trial": 12, "refusals": 3, "kl": 0.08}
    assert abliteration.settings["optimization"]["trials"] == 30
    assert abliteration.settings["model"]["model"] == BASE_MODEL
    assert (fine_tune.kind, fine_tune.status, fine_tune.model) == ("finetune", "finished", str(runs.export))
    assert (failed.status, failed.metrics) == ("failed", None)


def test_rebuild_finds_models_from_artifacts_and_metadata(registry: Registry, runs: Runs) -> None:
    registry.rebuild(runs.root)
    models = {model.path: model for model in registry.list_models()}
    assert set(models) == {BASE_MODEL, str(runs.export), str(runs.adapter)}
    base, export, adapter = models[BASE_MODEL], models[str(runs.export)], models[str(runs.adapter)]
    assert (base.role, base.status, base.parent_path) == (ROLE_BASE, STATUS_EXTERNAL, None)
    assert (export.role, export.status, export.parent_path) == (ROLE_ABLITERATED, STATUS_AVAILABLE, BASE_MODEL)
    assert (export.run_path, export.trial, export.method) == (str(runs.abliteration), 12, "abliteration")
    assert export.created == 1600.0, "the artifact event's time, so a rebuild reproduces it"
    assert (adapter.role, adapter.parent_path) == (ROLE_FINE_TUNED, str(runs.export))
    assert adapter.run_path == str(runs.fine_tune)
    assert [model.path for model in registry.list_models(role=ROLE_FINE_TUNED)] == [str(runs.adapter)]


def test_lineage_goes_base_abliterated_fine_tuned(registry: Registry, runs: Runs) -> None:
    registry.rebuild(runs.root)
    chain = registry.lineage(runs.adapter)
    assert [model.role for model in chain] == [ROLE_BASE, ROLE_ABLITERATED, ROLE_FINE_TUNED]
    assert [model.path for model in chain] == [BASE_MODEL, str(runs.export), str(runs.adapter)]
    assert [model.path for model in registry.lineage(runs.export)] == [BASE_MODEL, str(runs.export)]
    assert [model.path for model in registry.lineage(BASE_MODEL)] == [BASE_MODEL]
    assert registry.lineage(runs.root / "unknown") == []
    assert [model.path for model in registry.children(runs.export)] == [str(runs.adapter)]


def test_lineage_accepts_relative_paths(registry: Registry, runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.rebuild(runs.root)
    monkeypatch.chdir(runs.adapter.parent)
    assert [model.role for model in registry.lineage(Path(runs.adapter.name))][-1] == ROLE_FINE_TUNED


def test_rebuild_is_idempotent(registry: Registry, runs: Runs) -> None:
    registry.rebuild(runs.root)
    registry.record_comparison([BASE_MODEL, runs.export], "builtin:harmful@test", runs.root / "comparison.json")
    first = (registry.list_runs(), registry.list_models(), registry.list_comparisons())
    registry.rebuild(runs.root)
    registry.rebuild(runs.root)
    assert (registry.list_runs(), registry.list_models(), registry.list_comparisons()) == first
    with sqlite3.connect(registry.path) as connection:
        counts = [connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("runs", "models")]
    assert counts == [4, 3]


def test_deleted_or_moved_folders_show_as_missing(registry: Registry, runs: Runs) -> None:
    registry.rebuild(runs.root)
    shutil.rmtree(runs.failed)
    shutil.rmtree(runs.adapter)
    statuses = {run.path: run.status for run in registry.list_runs()}
    assert statuses[runs.failed] == STATUS_MISSING
    assert {model.path: model.status for model in registry.list_models()}[str(runs.adapter)] == STATUS_MISSING
    chain = registry.lineage(runs.adapter)
    assert [model.status for model in chain] == [STATUS_EXTERNAL, STATUS_AVAILABLE, STATUS_MISSING]

    moved = runs.root / "20250101-000000-qwen-moved"
    runs.abliteration.rename(moved)
    registry.rebuild(runs.root)
    statuses = {run.path: run.status for run in registry.list_runs()}
    assert statuses[runs.abliteration] == statuses[runs.export_job] == STATUS_MISSING
    assert statuses[moved] == statuses[moved / "jobs" / runs.export_job.name] == "finished"
    assert statuses[runs.failed] == STATUS_MISSING, "a rebuild keeps what it can no longer see, as missing"

    assert registry.forget_missing() == 4, "three runs and the adapter"
    assert runs.failed not in {run.path for run in registry.list_runs()}


def test_record_run_and_model(registry: Registry, runs: Runs) -> None:
    record = registry.record_run(runs.export_job)
    assert (record.path, record.status, record.kind) == (runs.export_job, "finished", "export")
    assert {model.path for model in registry.list_models()} == {BASE_MODEL, str(runs.export)}
    assert registry.model(runs.export).run_path == str(runs.abliteration), "heretic.json names the source run"

    local_base = make_model_folder(runs.root.parent / "local-base", {})
    model = registry.record_model(local_base, role=ROLE_BASE, name="My base")
    assert (model.status, model.name, model.role) == (STATUS_AVAILABLE, "My base", ROLE_BASE)
    assert registry.model(local_base) == model
    registry.rebuild(runs.root)
    assert registry.model(local_base) == model, "a rebuild keeps models recorded by hand"

    with pytest.raises(UserInputError, match="role"):
        registry.record_model(local_base, role="merged")
    with pytest.raises(UserInputError, match="not a heretic-tui run"):
        registry.record_run(runs.root / "not-a-run")


def test_models_in_extra_folders_and_inside_runs(registry: Registry, runs: Runs, tmp_path: Path) -> None:
    inside = make_model_folder(runs.fine_tune / "merged", {"source_model": str(runs.adapter), "method": "lora"})
    extra = make_model_folder(
        tmp_path / "extra" / "hand-made", {"source_model": "other/base-model", "method": "abliteration", "trial": 3}
    )
    registry.rebuild(runs.root, model_directories=[tmp_path / "extra"])
    found = registry.model(inside)
    assert found is not None and (found.role, found.run_path) == (ROLE_FINE_TUNED, str(runs.fine_tune))
    assert [model.path for model in registry.lineage(inside)] == [
        BASE_MODEL, str(runs.export), str(runs.adapter), str(inside)
    ]
    assert [(model.path, model.role) for model in registry.lineage(extra)] == [
        ("other/base-model", ROLE_BASE), (str(extra), ROLE_ABLITERATED)
    ]


def test_comparisons(registry: Registry, runs: Runs) -> None:
    first = registry.record_comparison([BASE_MODEL, runs.export], "builtin:harmful@test", runs.root / "a.json")
    second = registry.record_comparison([runs.export, runs.adapter], "prompts.txt", runs.root / "b.json")
    assert second.id > first.id
    assert registry.list_comparisons() == [second, first]
    assert first.models == [BASE_MODEL, str(runs.export)]


def test_damaged_files_never_raise(registry: Registry, runs: Runs) -> None:
    (runs.fine_tune / "report.json").write_text("{not json", encoding="utf-8")
    (runs.fine_tune / "config.toml").write_text("[[[", encoding="utf-8")
    (runs.adapter / "heretic.json").write_text("[]", encoding="utf-8")
    with open(runs.fine_tune / "events.jsonl", "a", encoding="utf-8") as journal:
        journal.write("garbage line\n")
    registry.rebuild(runs.root)
    fine_tune = next(run for run in registry.list_runs() if run.path == runs.fine_tune)
    assert (fine_tune.metrics, fine_tune.settings) == (None, {})
    adapter = registry.model(runs.adapter)
    assert adapter is not None and adapter.run_path == str(runs.fine_tune)


def test_missing_runs_root_gives_an_empty_index(registry: Registry, tmp_path: Path) -> None:
    registry.rebuild(tmp_path / "does-not-exist")
    assert registry.list_runs() == [] and registry.list_models() == []


def test_database_settings(registry: Registry) -> None:
    with sqlite3.connect(registry.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    assert default_database_path() == Path(platformdirs.user_data_dir("heretic-tui")) / "registry.sqlite3"


def test_newer_schema_and_damaged_database_are_clear_errors(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    Registry(newer)
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(UserInputError, match="newer heretic-tui"):
        Registry(newer)
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserInputError, match="Delete the file"):
        Registry(damaged)


def _write_many(database: str, worker: int) -> None:
    registry = Registry(Path(database))
    for number in range(40):
        result = Path(database).parent / f"result-{worker}-{number}.json"
        registry.record_comparison([f"org/model-{worker}"], f"source-{worker}-{number}", result)
        registry.record_model(f"org/model-{worker}-{number}", role=ROLE_BASE)


def test_concurrent_writers(tmp_path: Path) -> None:
    database = tmp_path / "shared.sqlite3"
    Registry(database)
    with ProcessPoolExecutor(max_workers=3) as pool:
        list(pool.map(_write_many, [str(database)] * 3, range(3)))
    registry = Registry(database)
    assert len(registry.list_comparisons()) == 120
    assert len(registry.list_models()) == 120
