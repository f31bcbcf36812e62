"""A retry is answered from what the WAL holds: crash points around the key, and ``_id``\\ s.

The crash images here are copies of a live data dir taken at the moment a SIGKILL would freeze
it (the WAL's active segment still open); a second gateway opened on the copy is the restart.
The kill trial (tests/test_ingest_durability.py, ``python -m bench --scenario killtrial``) does
the same with real SIGKILLs at random moments.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.ingest.idempotency import IdempotencyStore
from astralog.runtime import Runtime
from astralog.settings import load_settings
from tests.conftest import bearer
from tests.ingest_helpers import ndjson, stored_markers

# Nothing seals or flushes by itself: each test decides where the crash lands.
QUIET = {"wal": {"fsync": True, "segment_max_age_seconds": 600}, "flush": {"interval_seconds": 600}}


@contextmanager
def gateway(data_dir: Path, **overrides: Any) -> Iterator[tuple[TestClient, Runtime]]:
    settings = load_settings(data_dir=data_dir, **{**QUIET, **overrides})
    runtime = Runtime(settings)
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield client, runtime
    finally:
        runtime.close()


def crash_image(data_dir: Path, target: Path, *, lose_store: bool = False) -> Path:
    """The data dir as a SIGKILL leaves it. ``lose_store``: before the store wrote anything."""

    def skip(_: str, names: list[str]) -> list[str]:
        return [n for n in names if lose_store and n.startswith("idempotency.sqlite3")]

    shutil.copytree(data_dir, target, ignore=skip)
    return target


def drain(client: TestClient, runtime: Runtime) -> dict[str, int]:
    """Flush everything acknowledged; marker -> times stored in the bucket."""
    data = runtime.data
    data.wal.force_seal()
    assert client.portal is not None
    client.portal.call(data.flusher.flush_once)
    assert not data.wal.sealed_segments(), "the flush left segments in the WAL"
    return stored_markers(runtime.settings.path(runtime.settings.storage.local_root))


def send(client: TestClient, key: str, markers: list[str], idem: str) -> Any:
    body = ndjson(markers) + b"not json\n"  # a reject too: the replayed answer lists it
    headers = {**bearer(key), "Idempotency-Key": idem}
    return client.post("/v1/ingest", content=body, headers=headers)


def first_request(data_dir: Path) -> tuple[str, dict[str, Any]]:
    """Bootstrap, then one acknowledged request with key ``k1``: (ingest key, its answer)."""
    with gateway(data_dir) as (client, runtime):
        boot = runtime.bootstrap()
        assert boot is not None
        answer = send(client, boot.ingest_key, ["a", "b", "c"], "k1")
        assert answer.status_code == 200, answer.text
        return boot.ingest_key, answer.json()


def test_crash_after_the_wal_fsync_before_the_key_is_recorded(tmp_path: Path) -> None:
    """The SIGKILL lands after the events are fsync'd and before anything else is written:
    the retry must be answered from the WAL, not stored a second time."""
    live = tmp_path / "live"
    with gateway(live) as (client, runtime):
        boot = runtime.bootstrap()
        assert boot is not None
        first = send(client, boot.ingest_key, ["a", "b", "c"], "k1")
        assert first.status_code == 200, first.text
        image = crash_image(live, tmp_path / "restarted", lose_store=True)

    with gateway(image) as (client, runtime):
        retry = send(client, boot.ingest_key, ["a", "b", "c"], "k1")
        assert retry.status_code == 200
        assert retry.headers.get("Idempotent-Replayed") == "true"
        assert retry.json() == first.json()
        assert drain(client, runtime) == {"a": 1, "b": 1, "c": 1}


def test_crash_while_a_segment_is_released(tmp_path: Path) -> None:
    """Receipts reach SQLite before the segment is deleted; a crash in between, or after, and
    the retry is still a replay."""
    live = tmp_path / "live"
    with gateway(live) as (client, runtime):
        boot = runtime.bootstrap()
        assert boot is not None
        first = send(client, boot.ingest_key, ["a"], "k1")
        wal, store = runtime.data.wal, runtime.data.idempotency
        segment = wal.force_seal()
        assert segment is not None
        store.releasing(wal.segment_receipts(segment))  # release began; the unlink never ran
        image = crash_image(live, tmp_path / "mid-release")

    with gateway(image) as (client, runtime):
        retry = send(client, boot.ingest_key, ["a"], "k1")
        assert retry.headers.get("Idempotent-Replayed") == "true"
        assert retry.json() == first.json()
        assert drain(client, runtime) == {"a": 1}  # segment flushed and released this time
    assert not list((image / "wal").glob("*.arrows*"))

    with gateway(image) as (client, runtime):  # only SQLite remembers k1 now
        retry = send(client, boot.ingest_key, ["a"], "k1")
        assert retry.headers.get("Idempotent-Replayed") == "true"
        assert retry.json() == first.json()
        assert drain(client, runtime) == {"a": 1}


def test_concurrent_retries_after_a_restart_append_once(tmp_path: Path) -> None:
    live = tmp_path / "live"
    key, _ = first_request(live)
    with gateway(live) as (client, runtime):
        answers = [send(client, key, ["a", "b", "c"], "k1") for _ in range(3)]
        assert {a.headers.get("Idempotent-Replayed") for a in answers} == {"true"}
        assert drain(client, runtime) == {"a": 1, "b": 1, "c": 1}


def test_a_key_is_forgotten_after_the_window(tmp_path: Path) -> None:
    live = tmp_path / "live"
    with gateway(live, ingest={"idempotency_window_seconds": 0}) as (client, runtime):
        boot = runtime.bootstrap()
        assert boot is not None
        send(client, boot.ingest_key, ["a"], "k1")
        again = send(client, boot.ingest_key, ["a"], "k1")
        assert "Idempotent-Replayed" not in again.headers
        assert drain(client, runtime) == {"a": 2}
        assert runtime.data.idempotency.purge() >= 0


# ---- the store on its own -------------------------------------------------------------------


def test_store_keeps_receipts_in_memory_until_release_then_in_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "idempotency.sqlite3"
    store = IdempotencyStore(path, window_seconds=3600)
    receipt = store.receipt("o", "s", key="k", answer=(200, {"accepted": 1}), ids=["d1", "d2"])
    store.committed([receipt])
    assert store.lookup("o", "s", "k") == (200, {"accepted": 1})
    assert store.lookup("o", "other", "k") is None  # per source
    assert store.known_ids("o", "s", ["d1", "d3"]) == {"d1"}
    reopened = IdempotencyStore(path, window_seconds=3600)
    assert reopened.lookup("o", "s", "k") is None  # memory only: the WAL still holds it
    store.releasing([receipt])
    store.close()
    assert reopened.lookup("o", "s", "k") == (200, {"accepted": 1})
    assert reopened.known_ids("o", "s", ["d1", "d2", "d3"]) == {"d1", "d2"}
    reopened.close()


def test_store_forgets_expired_receipts(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "i.sqlite3", window_seconds=1)
    stale = store.receipt("o", "s", key="stale", answer=(200, {}))
    stale["at"] = time.time() - 5
    store.committed([stale])
    assert store.lookup("o", "s", "stale") is None
    recent = store.receipt("o", "s", key="recent", answer=(200, {}), ids=["x"])
    store.releasing([stale, recent])  # only what is inside the window is written
    assert store.lookup("o", "s", "recent") == (200, {})
    assert store.known_ids("o", "s", ["x"]) == {"x"}
    time.sleep(1.1)
    assert store.lookup("o", "s", "recent") is None
    assert store.known_ids("o", "s", ["x"]) == set()
    assert store.purge() == 2
    store.close()


@pytest.mark.parametrize("count", [1, 1200])
def test_known_ids_reads_any_number_of_ids(tmp_path: Path, count: int) -> None:
    store = IdempotencyStore(tmp_path / "i.sqlite3", window_seconds=60)
    ids = [f"doc-{i}" for i in range(count)]
    store.releasing([store.receipt("o", "s", ids=ids)])
    assert store.known_ids("o", "s", [*ids, "new"]) == set(ids)
    store.close()
