"""The README's run path, as a newcomer takes it on a fresh machine.

Clone the repository, install exactly what ``make run`` installs (``make install``: a new
virtualenv, runtime dependencies only, no test extras), start ``astralog serve`` from the clone's
root with default settings (so the data dir is the relative ``.astralog``), paste the curl it
prints, and require that the event is committed in a Parquet batch recorded in the catalog within
15 s, that the WAL drains and that search finds it; then SIGTERM must end the server cleanly.

The clone is of the committed ``HEAD``: uncommitted changes in the work tree are not part of
it, as on CI, which runs on a clean checkout. pip's cache is used, so a run costs a few seconds
of installing plus the scenario.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.ingest_helpers import free_port

REPO = Path(__file__).resolve().parents[1]
FRESHNESS_SECONDS = 15.0
MESSAGE = "hello from the quickstart"

# Imports every module of the installed package: a runtime import that only a test extra
# provides fails here, not in a user's first `make run`.
IMPORT_ALL = """
import importlib, pkgutil
names, todo = [], ["astralog", "astralog.connectors", "astralog.schemas"]
while todo:  # the mapped packages live in other folders, so walk each package's own path
    package = importlib.import_module(todo.pop())
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if module.name not in names:
            names.append(module.name)
            importlib.import_module(module.name)
            todo += [module.name] if module.ispkg else []
assert "astralog.connectors.s3.connector" in names, names
print(len(names))
"""


def newcomer_env(**extra: str) -> dict[str, str]:
    """The environment of someone who never ran the tests: no ASTRALOG_* and no active venv."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASTRALOG_", "PYTEST_", "COV_"))
        and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    if sys.prefix != sys.base_prefix:  # drop the test venv from PATH so python3 is the system's
        venv_bin = str(Path(sys.prefix) / "bin")
        path = inherited.get("PATH", "").split(os.pathsep)
        inherited["PATH"] = os.pathsep.join(p for p in path if p != venv_bin)
    return {**inherited, **extra}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh") / "astralog"
    run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(root)], cwd=REPO, timeout=120)
    # `make run` is `make install` followed by `.venv/bin/astralog serve`.
    run(["make", "install"], cwd=root, timeout=300)
    return root


def run(argv: list[str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=newcomer_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_runtime_install_imports_every_module(clone: Path) -> None:
    count = run([str(clone / ".venv/bin/python"), "-c", IMPORT_ALL], cwd=clone, timeout=120)
    assert int(count) > 20, count


@pytest.mark.slow
def test_printed_curl_is_committed_to_parquet_and_found(clone: Path) -> None:
    port = free_port()
    log = clone / "serve.log"
    with serving(clone, port, log) as server:
        banner = wait_for_banner(log, server)
        admin = re.search(r"Admin token:\s+(alt_\S+)", banner)
        assert admin, banner
        curl = banner[banner.index("curl -sS") :].split("\n\n")[0]
        assert f"http://127.0.0.1:{port}/v1/ingest" in curl, curl
        wait_ready(port, server, log)
        pasted = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=30)
        acked = time.monotonic()
        assert pasted.returncode == 0, pasted.stderr
        assert '"accepted":1' in pasted.stdout.replace(" ", ""), pasted.stdout

        found = search(port, admin.group(1))  # at once: what is still in the WAL is searched
        assert [(e["body"], e["service"], e["level"]) for e in found] == [(MESSAGE, "demo", "INFO")]

        batch = wait_committed(clone / ".astralog", acked, log)
        table = pq.read_table(clone / ".astralog" / "bucket" / batch)
        assert table.column("Body").to_pylist() == [MESSAGE]
        assert [e["body"] for e in search(port, admin.group(1))] == [MESSAGE]

        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the parent sees why it
        # ended: "terminated by SIGTERM" after a complete shutdown is the clean exit.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()[-3000:]
    text = log.read_text()
    assert "Application shutdown complete." in text and "Traceback" not in text, text[-3000:]
    assert wal_files(clone / ".astralog") == []


class serving:
    """``.venv/bin/astralog serve`` from the clone's root; killed if the test left it running."""

    def __init__(self, clone: Path, port: int, log: Path) -> None:
        self.argv = [str(clone / ".venv/bin/astralog"), "serve"]
        self.cwd, self.log = clone, log
        self.env = newcomer_env(ASTRALOG_SERVER__PORT=str(port))

    def __enter__(self) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self.process

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def wait_for_banner(log: Path, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "-d '{" in text:
            return text
        assert server.poll() is None, f"the server exited:\n{text[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no first-start banner:\n{log.read_text()[-3000:]}")


def wait_ready(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server never became ready:\n{log.read_text()[-3000:]}")


def search(port: int, admin: str) -> list[dict[str, object]]:
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/search",
        json={"query": f'"{MESSAGE}"', "start": "now-5m"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    events: list[dict[str, object]] = answer.json()["events"]
    return events


def wait_committed(data_dir: Path, acked: float, log: Path) -> str:
    """The object key of the committed batch, once the catalog has it and the WAL is empty."""
    while time.monotonic() - acked < FRESHNESS_SECONDS:
        keys = committed_keys(data_dir)
        if keys and not wal_files(data_dir):
            assert len(keys) == 1, keys
            return keys[0]
        time.sleep(0.1)
    raise AssertionError(
        f"not committed to Parquet within {FRESHNESS_SECONDS}s: catalog {committed_keys(data_dir)},"
        f" WAL {wal_files(data_dir)}\n{log.read_text()[-3000:]}"
    )


def committed_keys(data_dir: Path) -> list[str]:
    catalog = data_dir / "catalog.sqlite3"
    if not catalog.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)) as db:
        return [str(row[0]) for row in db.execute("SELECT object_key FROM batches WHERE rows > 0")]


def wal_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "wal").glob("*.arrows*"))
