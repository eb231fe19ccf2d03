"""Two workers on one study in a real PostgreSQL server, on the demo model: one is killed in the middle of a trial,
the other fails that trial once its heartbeat stops, runs it again, and the study ends with exactly its target of
completed trials, no trial number twice, none of the killed worker's completed trials lost, and a report that lists
them all. A run whose study is in its journal file refuses a second worker (one paragraph, exit code 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from heretic_tui.cli.main import main
from heretic_tui.core.abliteration.job import start_abliteration
from heretic_tui.core.abliteration.study_storage import StudyLocation, check_shareable
from heretic_tui.core.abliteration.workers import CLAIM_ATTRIBUTE, SURPLUS_ATTRIBUTE, WORKER_ATTRIBUTE
from heretic_tui.core.errors import UserInputError
from heretic_tui.core.runs.events import TrialFinished, TrialStarted
from heretic_tui.core.runs.run_directory import RunDirectory
from heretic_tui.core.settings import Settings
from heretic_tui.tui.app import HereticApp
from heretic_tui.tui.screens.abliteration_dashboard import AbliterationDashboard
from heretic_tui.tui.widgets.trial_table import TrialTable
from postgres_server import PostgresServer, postgres_server  # noqa: F401  (the fixture)
from shared_cache import SHARED_CACHE

TARGET = 12
QUICK = ["--model", "demo", "--headless", "--set", "prompts.max_eval_prompts=16",
         "--set", "prompts.max_direction_prompts=32", "--set", "optimization.heartbeat_seconds=2"]
POLL_SECONDS = 0.2
"""How often the dashboard test looks at the screen again while the dashboard reads the study."""


def cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "heretic_tui.cli", "abliterate", *arguments]


def start(arguments: list[str], log: Path, environment: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    environment = environment or {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as output:
        return subprocess.Popen(arguments, stdout=output, stderr=subprocess.STDOUT, env=environment)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout:.0f}s for {what}")


def trial_events(run: RunDirectory) -> tuple[list[int], list[int]]:
    events = run.read_events() if run.events_path.exists() else []
    return ([item.number for item in events if isinstance(item, TrialStarted)],
            [item.number for item in events if isinstance(item, TrialFinished)])


def worker_pid(run: RunDirectory) -> int | None:
    return run.worker_pid() if run.worker_alive() else None


def kill_in_flight(run: RunDirectory, study: Callable[[], optuna.Study]) -> tuple[int, list[int]]:
    """SIGKILL the worker of ``run`` while one of its trials runs, after it completed one; returns that trial's
    number and the trials it had completed.

    The worker is stopped (SIGSTOP) as soon as its journal says a trial started, and killed only if the storage
    still shows that trial running; otherwise it goes on to its next trial.
    """
    pid = wait_for(lambda: worker_pid(run), f"the joined worker of {run.path} to start")
    checked: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started, finished = trial_events(run)
        candidates = [number for number in started if number not in finished and number not in checked]
        if finished and candidates:
            number = candidates[-1]
            checked.add(number)
            os.kill(pid, signal.SIGSTOP)
            trial = next(item for item in study().trials if item.number == number)
            if trial.state == TrialState.RUNNING:
                os.kill(pid, signal.SIGKILL)
                return number, trial_events(run)[1]
            os.kill(pid, signal.SIGCONT)
        assert run.worker_alive(), f"the joined worker ended before it could be killed:\n{run.log_path.read_text()}"
        time.sleep(0.02)
    states = [(trial.number, trial.state.name, trial.user_attrs.get(CLAIM_ATTRIBUTE)) for trial in study().trials]
    raise AssertionError(f"the joined worker never had a trial in flight after completing one; the study's trials "
                         f"(number, state, claim): {states}\nits log:\n{run.log_path.read_text()}")


def open_transactions(url: str) -> int:
    """Connections to the server, other than this one, inside a transaction or a query right now."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                 "pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')").fetchone()
    return int(row[0]) if row else 0


def hold_after_its_first_trial(run: RunDirectory, study: Callable[[], optuna.Study], url: str) -> int:
    """Pause (SIGSTOP) the worker of ``run`` as soon as it has completed a trial, and return its pid.

    The first worker has stored the shared directions by then; holding it lets the joined worker reach its trials
    however fast the first one is on this machine (on a quiet one it could finish the whole study while the joined
    worker is still loading). Its trials in flight go stale while it is held, so the joined worker fails them and
    runs them again: the path of a worker that was paused too long. It is held only where every trial it has
    running is claimed (has beaten once): one stopped between asking a trial and claiming it holds that trial for
    ``UNCLAIMED_SECONDS`` (the path of a worker killed in that instant, which test_workers_view covers), longer
    than this test waits; and only where no connection is inside a transaction: one stopped inside Optuna's trial
    creation keeps the study row locked, and the joined worker would wait for that lock for ever.
    """
    pid = wait_for(lambda: worker_pid(run), f"the first worker of {run.path} to start")
    wait_for(lambda: trial_events(run)[1] or not run.worker_alive(), "the first worker to complete a trial")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert run.worker_alive(), f"the first worker ended early:\n{run.log_path.read_text()}"
        os.kill(pid, signal.SIGSTOP)
        running = study().get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if all(trial.user_attrs.get(CLAIM_ATTRIBUTE) == trial.number for trial in running) and \
                not open_transactions(url):
            return pid
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the first worker never stood with all its running trials claimed")


@dataclass
class SharedRun:
    """The two-worker run every test of this module looks at (it is run once)."""

    url: str
    run_dir: Path
    joined: RunDirectory
    study_name: str
    killed: int
    completed_by_killed: list[int]

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.url)


def isolated_environment(home: Path) -> dict[str, str]:
    """What the autouse isolated_home fixture gives a test, for the module's one run (made before any test)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HERETIC_")}
    environment.update(XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"),
                       XDG_CACHE_HOME=str(SHARED_CACHE), HF_HOME=str(home / "hf"), OMP_NUM_THREADS="1")
    return environment


@pytest.fixture(scope="module")
def shared_run(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    folder = tmp_path_factory.mktemp("workers")
    environment = isolated_environment(folder / "home")
    run_dir = folder / "run"
    first = start(cli(*QUICK, "--trials", str(TARGET), "--run-dir", str(run_dir), "--storage", postgres_server.url),
                  folder / "first.log", environment)
    wait_for(lambda: (run_dir / "job.json").exists() or first.poll() is not None, "the run to be created")
    assert first.poll() is None, (folder / "first.log").read_text()
    second = start(cli("--join", str(run_dir), "--headless"), folder / "second.log", environment)
    name = json.loads((run_dir / "job.json").read_text())["arguments"]["study"]
    loaded: list[optuna.Study] = []

    def study() -> optuna.Study:
        """The shared study, loaded once it exists (the first worker creates it after loading the model)."""
        if not loaded:
            loaded.append(optuna.load_study(study_name=name, storage=postgres_server.url))
        return loaded[0]

    held = hold_after_its_first_trial(RunDirectory(run_dir), study, postgres_server.url)
    try:
        workers = run_dir / "workers"
        joined = RunDirectory(wait_for(lambda: next(iter(workers.glob("*/job.json")), None), "the joined worker's "
                                       "folder").parent)
        killed, completed_by_killed = kill_in_flight(joined, study)
    finally:
        os.kill(held, signal.SIGCONT)
    assert first.wait(timeout=180) == 0, (folder / "first.log").read_text() + (run_dir / "worker.log").read_text()
    second.wait(timeout=60)
    return SharedRun(postgres_server.url, run_dir, joined, name, killed, completed_by_killed)


def test_two_workers_one_killed_mid_trial_reach_the_target_exactly(shared_run: SharedRun) -> None:
    trials = shared_run.study().trials
    numbers = [trial.number for trial in trials]
    assert len(numbers) == len(set(numbers)), f"a trial number was given twice: {numbers}"
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    assert len(complete) == TARGET, [(trial.number, trial.state.name) for trial in trials]
    assert set(shared_run.completed_by_killed) <= {trial.number for trial in complete}, "a completed trial was lost"
    killed_trial = next(trial for trial in trials if trial.number == shared_run.killed)
    assert killed_trial.state == TrialState.FAIL
    retry = [trial for trial in complete if trial.system_attrs.get("failed_trial") == shared_run.killed]
    assert len(retry) == 1, "the killed worker's trial was not run again exactly once"
    assert retry[0].params == killed_trial.params
    assert retry[0].user_attrs[WORKER_ATTRIBUTE] != killed_trial.user_attrs[WORKER_ATTRIBUTE]
    assert len({trial.user_attrs[WORKER_ATTRIBUTE] for trial in complete}) == 2, "both workers ran trials"
    retried = {number for trial in complete for number in trial.system_attrs.get("retry_history", [])}
    for trial in trials:
        if trial.state == TrialState.FAIL:
            reason = trial.user_attrs.get(SURPLUS_ATTRIBUTE) or "repeats_trial" in trial.user_attrs
            assert reason or trial.number in retried, f"trial {trial.number} failed and was never run again"

    report = json.loads((shared_run.run_dir / "report.json").read_text())
    assert report["status"] == "finished"
    assert sorted(item["number"] for item in report["trials"]) == sorted(trial.number for trial in complete)
    assert {item["number"]: item["worker"] for item in report["trials"]} == {
        trial.number: trial.user_attrs[WORKER_ATTRIBUTE] for trial in complete}
    assert report["chosen_trial"] in report["pareto"]
    directions = (shared_run.run_dir / "directions.safetensors").read_bytes()
    assert (shared_run.joined.path / "directions.safetensors").read_bytes() == directions


def test_attach_to_the_killed_worker_lists_every_worker(shared_run: SharedRun,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["attach", str(shared_run.joined.path), "--headless"])
    error = capsys.readouterr().err
    workers = {trial.user_attrs[WORKER_ATTRIBUTE] for trial in shared_run.study().trials
               if trial.state == TrialState.COMPLETE}
    assert f"{TARGET} trials complete, 0 running, by 2 workers" in error, error
    for worker in workers:
        assert f"  {worker}: " in error


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_dashboard_of_the_killed_worker_follows_the_whole_study(shared_run: SharedRun,
                                                                           tmp_path: Path) -> None:
    settings = Settings()
    settings.output.runs_directory = str(tmp_path / "runs")
    app = HereticApp(settings=settings, attach_run=shared_run.joined.path)
    complete = {trial.number: trial for trial in shared_run.study().trials if trial.state == TrialState.COMPLETE}
    async with app.run_test(size=(160, 40)) as pilot:
        deadline = time.monotonic() + 60

        def table() -> TrialTable | None:
            return app.screen.query_one(TrialTable) if isinstance(app.screen, AbliterationDashboard) else None

        while (shown := table()) is None or not (shown.shows_workers and shown.row_count == TARGET):
            assert time.monotonic() < deadline, "the dashboard never showed every worker's trials"
            await pilot.pause(POLL_SECONDS)
        rows = app.screen.state.trials
        assert {number: row.worker for number, row in rows.items()} == {
            number: trial.user_attrs[WORKER_ATTRIBUTE] for number, trial in complete.items()}
        assert sum(speed.completed for speed in app.screen.state.workers) == TARGET
        assert any(part.startswith("2 workers: ") for part in app.screen.figure_parts())


def test_a_study_in_the_journal_file_refuses_a_second_worker(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings()
    settings.model.model = "demo"
    run_dir = tmp_path / "run"
    handle = start_abliteration(settings, run_dir)
    try:
        with pytest.raises(SystemExit) as ended:
            main(["abliterate", "--join", str(run_dir), "--headless"])
    finally:
        handle.kill()
        handle.wait(timeout=60)
    message = capsys.readouterr().err.strip()
    assert ended.value.code == 2, message
    assert "Traceback" not in message and "\n" not in message
    assert "study.journal" in message and "one writer" in message and "--storage postgresql://" in message
    assert not (run_dir / "workers").exists()


def test_sqlite_takes_one_writer_only() -> None:
    with pytest.raises(UserInputError, match="SQLite does not take several writers"):
        check_shareable(StudyLocation("sqlite:///study.db", "a"), "The run")
    check_shareable(StudyLocation("postgresql://someone@127.0.0.1:5432/db", "a"), "The run")
