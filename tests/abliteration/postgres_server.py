"""A throwaway PostgreSQL server for the tests of several workers: initdb into a temporary folder, 127.0.0.1 and a
free port, trust authentication, no fsync; stopped and removed at the end.

The server binaries come from the system packages (scripts/setup.sh installs ``postgresql`` when it is missing):
found on PATH or where Debian and Ubuntu put them (/usr/lib/postgresql/<version>/bin). PostgreSQL refuses to run
as root, so as root the server runs as the ``postgres`` user (made by the package) or ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DATABASE_USER = "heretic"


@dataclass
class PostgresServer:
    url: str
    data: Path
    binaries: Path
    port: int
    user: pwd.struct_passwd | None

    def control(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run pg_ctl on this server's data folder as the server's user."""
        return _run_as(self.user, [str(self.binaries / "pg_ctl"), "-D", str(self.data), *arguments], check=check)

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -F -c max_connections=60"
        self.control("-o", options, "-l", str(self.data / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.control("-m", mode, "-w", "stop", check=False)


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda path: int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit()
                        else 0)
    return Path(candidates[-1]).parent if candidates else None


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root with neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")


def _run_as(user: pwd.struct_passwd | None, command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    options = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/", **options)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    binaries = _binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: scripts/setup.sh installs the "
                    "'postgresql' system package as root; install it by hand elsewhere")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="heretic-postgres-"))
    data = folder / "data"
    data.mkdir()
    if user is not None:
        for path in (folder, data):
            os.chown(path, user.pw_uid, user.pw_gid)
    _run_as(user, [str(binaries / "initdb"), "-D", str(data), "-U", DATABASE_USER, "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--locale=C"])
    port = _free_port()
    server = PostgresServer(f"postgresql://{DATABASE_USER}@127.0.0.1:{port}/postgres", data, binaries, port, user)
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
