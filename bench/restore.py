"""RTO of the control plane: how long ``astralog restore`` takes for a log of N events.

    python -m bench.restore --events 10000

Builds a control plane of about ``--events`` events (sources and ingest keys of one org, each a
committed transaction as the API makes them), signs a checkpoint, writes ``astralog backup``,
then times ``astralog restore`` into an empty data dir as the operator runs it (a fresh
process: interpreter start, archive checks, SHA-256, integrity and chain verification, moving
the files into place). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from astralog.controlplane.store import Actor
from astralog.runtime import Runtime
from astralog.settings import load_settings

ACTOR = Actor("bench:restore", "local")


def build(data_dir: Path, events: int) -> int:
    runtime = Runtime(load_settings(data_dir=data_dir))
    runtime.bootstrap()
    org = runtime.control.create_org("bench", "enterprise", ACTOR)["id"]
    count = min(900, events // 2)
    sources = [runtime.control.create_source(org, f"s{i}", "", ACTOR)["id"] for i in range(count)]
    issued = 0
    while runtime.control.store.head()[0] < events:
        runtime.control.issue_key(org, sources[issued % len(sources)], ACTOR)
        issued += 1
    runtime.signer.checkpoint(runtime.control.store)
    count = runtime.control.store.head()[0]
    runtime.close()
    return count


def _cli(data_dir: Path, *args: str) -> float:
    env = {**os.environ, "ASTRALOG_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "astralog.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        count = build(root / "live", args.events)
        archive = root / "backup.tar.gz"
        backup_s = _cli(root / "live", "backup", "--to", str(archive))
        restore_s = _cli(root / "restored", "restore", "--from", str(archive))
        print(json.dumps({
            "events": count,
            "control_db_bytes": (root / "live" / "control.sqlite3").stat().st_size,
            "archive_bytes": archive.stat().st_size,
            "backup_seconds": round(backup_s, 2),
            "restore_seconds": round(restore_s, 2),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
