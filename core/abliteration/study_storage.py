"""Where an abliteration study lives: the run folder's journal file (one writer) or an Optuna RDB storage.

The journal file (``study.journal``) is the default: it survives kill -9 and power loss, but it is safe for one
writer only, so a run that keeps its study there is never joined by a second worker. A study in an RDB storage
(``--storage postgresql://host/db``) is shared by every worker that joins it, on this box or another; the run
folder stays the home of everything else (settings, events, logs, report, exports) either way.

Where a run's study lives is recorded in its job.json arguments (``storage`` and ``study``), written by the starter,
so the worker, export, compare and the screens all find it the same way. Passwords never go into a URL (it is
written into job.json): PostgreSQL reads them from ``PGPASSWORD`` or ``~/.pgpass``. Every database failure becomes
one :class:`StorageError` paragraph naming the storage without its password and saying how to resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heretic_tui.core.errors import StorageError, UserInputError

STORAGE_ARGUMENT = "storage"
"""The job.json argument holding the RDB storage URL of a run whose study is shared (absent: the journal file)."""
STUDY_ARGUMENT = "study"
"""The job.json argument holding the study's name in that storage."""
JOIN_ARGUMENT = "join"
"""The job.json argument set on a worker that joined a study someone else started."""

SHAREABLE_SCHEMES = ("postgresql", "mysql")
"""Databases whose Optuna storage takes several writers at once (row locks around trial numbers)."""
SINGLE_WRITER_SCHEMES = ("sqlite",)
"""Accepted for one worker only: SQLite locks the whole file and times out under concurrent writers."""

CONFIG_ATTRIBUTE = "heretic_tui_config"
"""The study's user attribute holding the starter's config.toml, so a worker on another box joins with it."""

RETRIES = 3
"""How often a trial whose worker stopped answering is run again by the others before it is given up."""


@dataclass(frozen=True)
class StudyLocation:
    """A run's study: in an RDB storage (``url`` and ``name``) or, with no url, in the run folder's journal."""

    url: str | None = None
    name: str = ""

    @property
    def shared(self) -> bool:
        """True when several workers may write the study at once."""
        return self.url is not None and _scheme(self.url) in SHAREABLE_SCHEMES

    def describe(self) -> str:
        if self.url is None:
            return "the run folder's journal file"
        return f"study '{self.name}' in {redacted(self.url)}"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower()


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."


def check_storage_url(url: str, flag: str = "--storage") -> None:
    """A URL Optuna can open, naming a database we support, without a password, whose driver is installed."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        raise UserInputError(
            f"{flag} {url!r} is not a database URL. Give one like postgresql://user@host:5432/database (the study "
            "then lives in that PostgreSQL database)."
        ) from None
    scheme = _scheme(url)
    if scheme not in SHAREABLE_SCHEMES + SINGLE_WRITER_SCHEMES:
        raise UserInputError(
            f"{flag} {redacted(url)} names a '{parsed.drivername}' database; heretic-tui keeps studies in "
            "PostgreSQL (postgresql://user@host:5432/database), MySQL or, for one worker, SQLite."
        )
    if parsed.password:
        raise UserInputError(
            f"{flag} {redacted(url)} holds a password, which would be written into job.json of every worker's run "
            "folder. Leave it out of the URL and give it to the database client instead: PGPASSWORD or ~/.pgpass "
            "for PostgreSQL, ~/.my.cnf for MySQL."
        )
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as error:
        packages = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql"}
        package = packages.get(error.name or "", error.name or "its driver")
        raise UserInputError(
            f"{flag} {redacted(url)} needs the Python database driver '{error.name}', which is not installed. "
            f"Install it into heretic-tui's environment (pip install {package}), then start again."
        ) from None


def check_shareable(location: StudyLocation, what: str) -> None:
    """Refuse a second writer on a study that takes one: the journal file, or SQLite."""
    if location.shared:
        return
    if location.url is None:
        where = ("keeps its study in the journal file study.journal of its run folder, which is safe for one writer "
                 "only")
    else:
        where = f"keeps its study in {redacted(location.url)}, and SQLite does not take several writers at once"
    raise UserInputError(
        f"{what} {where}, so no other worker may join it. Start the run with a shared study instead: "
        "`heretic-tui abliterate --storage postgresql://user@host:5432/database ...`, then join it with "
        "`heretic-tui abliterate --join RUN_DIR` on this box or `--join URL --study NAME` on another."
    )


def location_from_arguments(arguments: dict[str, Any]) -> StudyLocation:
    url = arguments.get(STORAGE_ARGUMENT)
    if not isinstance(url, str) or not url:
        return StudyLocation()
    return StudyLocation(url, str(arguments.get(STUDY_ARGUMENT) or ""))


def location_of_run(run_path: Path) -> StudyLocation:
    """Where the run in ``run_path`` keeps its study, from its job.json (the journal file when it names none)."""
    from heretic_tui.core.runs.run_directory import RunDirectory

    return location_from_arguments(RunDirectory(run_path).read_job().get("arguments") or {})


@contextmanager
def database_errors(location: StudyLocation, action: str, resume: str = "") -> Iterator[None]:
    """Turn a database that cannot be reached, or goes away mid-run, into one :class:`StorageError` paragraph."""
    if location.url is None:
        yield
        return
    import optuna
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        original = error.__cause__ if isinstance(error, optuna.exceptions.StorageInternalError) else error
        cause = str(getattr(original, "orig", None) or original or error).strip().splitlines()
        detail = cause[0][:300] if cause else type(error).__name__
        kept = (" Every trial it already recorded as complete is kept there; a trial in flight is run again."
                if location.name else "")
        where = location.describe() if location.name else redacted(location.url)
        raise StorageError(
            f"Could not {action}: the database of {where} failed ({detail}).{kept} Once the database answers, "
            + (resume or "start the command again.")
        ) from None


def open_rdb_storage(location: StudyLocation, heartbeat_seconds: int | None = None) -> Any:
    """The Optuna RDB storage of ``location``; with ``heartbeat_seconds`` a trial whose worker stops beating is failed
    and retried (see :data:`RETRIES`)."""
    import optuna

    assert location.url is not None
    options: dict[str, Any] = {}
    if heartbeat_seconds is not None:
        options = {
            "heartbeat_interval": heartbeat_seconds,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
        }
    with database_errors(location, "open the study's storage"):
        return optuna.storages.RDBStorage(location.url, engine_kwargs={"pool_pre_ping": True}, **options)


def study_names(storage: Any) -> list[str]:
    return sorted(summary.study_name for summary in storage.get_all_studies())


def stored_config(location: StudyLocation) -> str:
    """The config.toml the study's starter recorded, for a worker on another box that joins by URL and name."""
    storage = open_rdb_storage(location)
    with database_errors(location, "read the study"):
        try:
            study_id = storage.get_study_id_from_name(location.name)
        except KeyError:
            names = ", ".join(study_names(storage)[:20]) or "none"
            raise UserInputError(
                f"{redacted(location.url or '')} holds no study named '{location.name}' (studies there: {names}). "
                "Pass the name printed by the run that started it (--study NAME), or start a run there with "
                "--storage."
            ) from None
        config = storage.get_study_user_attrs(study_id).get(CONFIG_ATTRIBUTE)
    if not isinstance(config, str):
        raise UserInputError(
            f"The study '{location.name}' in {redacted(location.url or '')} was not started by heretic-tui (it has "
            "no recorded settings), so no worker can join it. Join a study started with `heretic-tui abliterate "
            "--storage URL`."
        )
    return config
