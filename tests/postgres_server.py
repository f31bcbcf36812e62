"""A real PostgreSQL server for tests: Debian's ``postgresql`` binaries, one cluster per session.

Load it from a test module with ``pytest_plugins = ["tests.postgres_server"]``. Fixtures:

* ``postgres_server`` (session): a throwaway cluster made by ``initdb`` in a temp dir and started
  by ``pg_ctl`` on a free loopback port (trust auth on loopback, fsync off: nothing here must
  survive the session);
* ``postgres_url``: a fresh, empty database on that server for one test.

The server refuses to run as root, so as root the cluster belongs to the ``postgres`` user the
Debian package creates, and the binaries run through ``runuser``. A server that cannot start
FAILS the test with its own log; nothing is skipped.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest registers it as a plugin.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.ingest_helpers import free_port

__all__ = ["PostgresServer", "running_postgres", "start_postgres_server"]

_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_OWNER = "postgres"  # the user Debian's package creates; the server refuses root


def _bin_dir() -> Path:
    found = [Path(d) for d in glob.glob(_BIN_GLOB) if (Path(d) / "initdb").exists()]
    if not found:
        pytest.fail(
            f"no PostgreSQL server binaries under {_BIN_GLOB}: install Debian's postgresql "
            "package (scripts/install.sh test does)"
        )
    return max(found, key=lambda d: int(d.parent.name.split(".")[0]))


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", _OWNER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    """A running cluster; ``database()`` makes a fresh database and returns its URL."""

    root: Path
    port: int
    bin_dir: Path
    _names: itertools.count[int]
    fsync: bool = False

    def url(self, dbname: str = "postgres", user: str = _OWNER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def database(self) -> str:
        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def stop(self) -> None:
        _run(self.bin_dir, ["pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop"])

    def start(self) -> None:
        """Start the cluster (again, after ``stop``) on its port."""
        fsync = "on" if self.fsync else "off"
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync={fsync}"
        started = _run(self.bin_dir, ["pg_ctl", "-D", str(self.root / "data"), "-l",
                                      str(self.root / "log"), "-o", options, "-w", "-t", "30",
                                      "start"])  # fmt: skip
        if started.returncode:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start:\n{started.stdout}\n{started.stderr}\n{log}")


def _run(bin_dir: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    argv = [str(bin_dir / argv[0]), *argv[1:]]
    return subprocess.run(_as_owner(argv), capture_output=True, text=True, timeout=60, check=False)


def start_postgres_server(root: Path, *, fsync: bool = False) -> PostgresServer:
    """initdb and start a cluster under ``root`` (which the server's user must own); without
    ``fsync`` (the tests), commits skip the disk flush."""
    bin_dir = _bin_dir()
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(_OWNER)
        except KeyError:
            pytest.fail(f"no {_OWNER!r} user to run PostgreSQL as (Debian's package makes it)")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    made = _run(bin_dir, ["initdb", "-D", str(data), "-U", _OWNER, "--auth=trust", "-E", "UTF8",
                          "--no-sync", "--no-instructions"])  # fmt: skip
    if made.returncode:
        pytest.fail(f"initdb failed:\n{made.stdout}\n{made.stderr}")
    server = PostgresServer(root, free_port(), bin_dir, itertools.count(1), fsync)
    server.start()
    return server


@contextlib.contextmanager
def running_postgres(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """A cluster of its own in a fresh temp dir, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="astralog-pg-"))
    try:
        server = start_postgres_server(root, fsync=fsync)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.database()
