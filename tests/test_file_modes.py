"""State files are the service user's alone: 0600 files in 0700 directories, whatever the umask.

The control plane holds key hashes and the audit history, the session store live sessions; a
0644 file would let any local account read them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from astralog import sqlite


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the common default, under which files come out 0644
    yield
    os.umask(previous)


def _modes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): oct(stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.usefixtures("loose_umask")
def test_a_new_store_is_private_with_its_wal_and_shm(tmp_path: Path) -> None:
    database = tmp_path / "state" / "sessions.sqlite3"
    conn = sqlite.connect(database)
    conn.execute("CREATE TABLE t (x)")  # the -wal and -shm files exist from the first write
    try:
        assert _modes(tmp_path) == {
            "state": "0o700",
            "state/sessions.sqlite3": "0o600",
            "state/sessions.sqlite3-shm": "0o600",
            "state/sessions.sqlite3-wal": "0o600",
        }
    finally:
        conn.close()


def test_init_leaves_nothing_readable_by_others(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "ASTRALOG_DATA_DIR": str(data)}
    done = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$0" -m astralog.cli init', sys.executable],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modes = _modes(data)
    assert any(name.endswith(".sqlite3") for name in modes), modes
    loose = {
        name: mode
        for name, mode in modes.items()
        if mode != ("0o700" if (data / name).is_dir() else "0o600")
    }
    assert not loose, f"state readable beyond its owner: {loose}"


def test_any_command_creating_the_data_dir_keeps_it_private(tmp_path: Path) -> None:
    """Not only serve and init: `orgs list` on a fresh data dir creates its state too."""
    data = tmp_path / "data"
    env = {**os.environ, "ASTRALOG_DATA_DIR": str(data)}
    done = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$0" -m astralog.cli orgs list', sys.executable],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modes = _modes(data) | {".": oct(stat.S_IMODE(data.stat().st_mode))}
    loose = {
        name: mode
        for name, mode in modes.items()
        if mode != ("0o700" if (data / name).is_dir() else "0o600")
    }
    assert not loose, f"state readable beyond its owner: {loose}"
