"""A retry is answered from what the WAL holds: crash points around the key, and ``_id``\\ s.

The crash images here are copies of a live data dir taken at the moment a SIGKILL would freeze
it (the WAL's active segment still open); a second gateway opened on the copy is the restart.
The kill trial (tests/test_ingest_durability.py, ``python -m bench --scenario killtrial``) does
the same with real SIGKILLs at random moments.
"""

from __future__ import annotations

import gzip
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ConflictError, Elasticsearch, helpers
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.errors import ValidationFailed
from astralog.ingest.idempotency import IdempotencyStore
from astralog.runtime import SYSTEM, Runtime
from astralog.settings import load_settings
from tests.conftest import bearer
from tests.gateway import Gateway, gateway_fixture  # noqa: F401 - provides `gateway`
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


@contextmanager
def gateway_in_process(
    data_dir: Path, *, bootstrap: bool = True
) -> Iterator[tuple[TestClient, Runtime, dict[str, str]]]:
    """A gateway; with ``bootstrap``, the Authorization header of its first ingest key."""
    with gateway(data_dir) as (client, runtime):
        boot = runtime.bootstrap() if bootstrap else None
        yield client, runtime, bearer(boot.ingest_key) if boot is not None else {}


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
        runtime.data.idempotency.purge()
        org, source = str(boot.org["id"]), str(boot.source["id"])
        assert runtime.data.idempotency.lookup(org, source, "k1") is None, "purged: forgotten"


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


# ---- Elasticsearch _id: a retry of a stored document is answered, not stored again ---------

BY_MARKER = "LogAttributes['marker'] = $marker"


def _es(gateway: Gateway) -> Elasticsearch:
    return Elasticsearch(f"{gateway.url}/v1/es", basic_auth=("astralog", gateway.ingest_key))


def _actions(marker: str, op: str, canary: str) -> list[dict[str, Any]]:
    """Five documents with ``_id``\\ s, and a canary without one: when the canary is in the
    bucket, the record it shared with the others has been flushed."""
    docs: list[dict[str, Any]] = [
        {"_op_type": op, "_index": "web", "_id": f"{marker}-{n}", "message": f"hit {n}",
         "marker": marker}
        for n in range(5)
    ]  # fmt: skip
    return [*docs, {"_index": "web", "message": "canary", "marker": canary}]


def _stored_once(gateway: Gateway, marker: str, canary: str) -> None:
    gateway.wait_for_rows(1, BY_MARKER, {"marker": canary})
    rows = gateway.rows(BY_MARKER, {"marker": marker})
    ids = sorted(row["ResourceAttributes"]["elasticsearch.id"] for row in rows)
    assert ids == [f"{marker}-{n}" for n in range(5)]


@pytest.mark.slow
def test_bulk_create_retried_with_the_same_ids_answers_409_and_stores_once(
    gateway: Gateway,
) -> None:
    es, marker = _es(gateway), f"dedupe-{uuid.uuid4().hex[:12]}"
    first = f"{marker}-canary-1"
    assert helpers.bulk(es, _actions(marker, "create", first)) == (6, [])
    _stored_once(gateway, marker, first)

    again = f"{marker}-canary-2"
    ok, errors = helpers.bulk(es, _actions(marker, "create", again), raise_on_error=False)
    assert ok == 1  # the canary
    assert isinstance(errors, list) and len(errors) == 5
    for error in errors:
        item = error["create"]
        assert item["status"] == 409
        assert item["error"]["type"] == "version_conflict_engine_exception"
        assert item["error"]["reason"] == (
            f"[{item['_id']}]: version conflict, document already exists (current version [1])"
        )
    raw = es.bulk(operations=[{"create": {"_index": "web", "_id": f"{marker}-0"}}, {"m": 1}])
    assert raw["errors"] is True and raw["items"][0]["create"]["status"] == 409
    _stored_once(gateway, marker, again)


@pytest.mark.slow
def test_bulk_index_retried_with_the_same_ids_is_a_noop(gateway: Gateway) -> None:
    es, marker = _es(gateway), f"dedupe-{uuid.uuid4().hex[:12]}"
    first = f"{marker}-canary-1"
    assert helpers.bulk(es, _actions(marker, "index", first)) == (6, [])
    _stored_once(gateway, marker, first)
    again = f"{marker}-canary-2"
    answers = list(helpers.streaming_bulk(es, _actions(marker, "index", again)))
    results = [item["index"] for _, item in answers]
    assert [(r["status"], r["result"]) for r in results[:5]] == [(200, "noop")] * 5
    assert (results[5]["status"], results[5]["result"]) == (201, "created")
    _stored_once(gateway, marker, again)


@pytest.mark.slow
def test_single_document_create_retried_is_a_conflict(gateway: Gateway) -> None:
    es, marker = _es(gateway), f"dedupe-{uuid.uuid4().hex[:12]}"
    created = es.create(index="app", id=f"{marker}-1", document={"marker": marker})
    assert created.meta.status == 201
    with pytest.raises(ConflictError) as conflict:
        es.create(index="app", id=f"{marker}-1", document={"marker": marker})
    assert conflict.value.body["error"]["type"] == "version_conflict_engine_exception"
    again = es.index(index="app", id=f"{marker}-1", document={"marker": marker})
    assert (again.meta.status, again["result"]) == (200, "noop")
    gateway.wait_for_rows(1, BY_MARKER, {"marker": marker})


def _bulk_body(doc_ids: list[str]) -> bytes:
    lines = [f'{{"create":{{"_index":"web","_id":"{i}"}}}}\n{{"marker":"{i}"}}\n' for i in doc_ids]
    return "".join(lines).encode()


def test_a_repeated_id_within_one_request_is_stored_once(tmp_path: Path) -> None:
    with gateway_in_process(tmp_path / "live") as (client, runtime, key):
        answer = client.post("/v1/es/_bulk", content=_bulk_body(["x", "x", "y"]), headers=key)
        statuses = [item["create"]["status"] for item in answer.json()["items"]]
        assert statuses == [201, 409, 201] and answer.json()["errors"] is True
        assert drain(client, runtime) == {"x": 1, "y": 1}


def test_ids_survive_a_crash_in_the_wal_record_of_their_events(tmp_path: Path) -> None:
    """The SIGKILL lands right after the fsync: the ids come back from the WAL on restart."""
    live = tmp_path / "live"
    with gateway_in_process(live) as (client, _, key):
        first = client.post("/v1/es/_bulk", content=_bulk_body(["a", "b"]), headers=key)
        assert first.json()["errors"] is False
        image = crash_image(live, tmp_path / "restarted", lose_store=True)
    with gateway_in_process(image, bootstrap=False) as (client, runtime, _):
        retry = client.post("/v1/es/_bulk", content=_bulk_body(["a", "b", "c"]), headers=key)
        assert [i["create"]["status"] for i in retry.json()["items"]] == [409, 409, 201]
        assert drain(client, runtime) == {"a": 1, "b": 1, "c": 1}
    with gateway_in_process(image, bootstrap=False) as (client, runtime, _):  # now from SQLite
        retry = client.post("/v1/es/_bulk", content=_bulk_body(["a", "c"]), headers=key)
        assert [i["create"]["status"] for i in retry.json()["items"]] == [409, 409]
        assert drain(client, runtime) == {"a": 1, "b": 1, "c": 1}


def test_ids_are_per_source(tmp_path: Path) -> None:
    with gateway(tmp_path / "live") as (client, runtime):
        boot = runtime.bootstrap()
        assert boot is not None
        key = bearer(boot.ingest_key)
        client.post("/v1/es/_bulk", content=_bulk_body(["shared"]), headers=key)
        org = str(boot.org["id"])
        other = runtime.control.create_source(org, "other", "", SYSTEM)
        issued = runtime.control.issue_key(org, other["id"], SYSTEM)
        answer = client.post(
            "/v1/es/_bulk", content=_bulk_body(["shared"]), headers=bearer(issued.credential.secret)
        )
        assert answer.json()["items"][0]["create"]["status"] == 201
        assert drain(client, runtime) == {"shared": 2}


# ---- a key reused with another body: 422, never a replay that drops the new events ---------

REUSED = "this Idempotency-Key was used with a different request body"


def test_a_key_reused_with_another_body_is_a_422_and_stores_nothing(tmp_path: Path) -> None:
    live = tmp_path / "live"
    with gateway_in_process(live) as (client, runtime, key):
        first = send(client, key["Authorization"].split()[1], ["a"], "k1")
        assert first.status_code == 200, first.text
        other = send(client, key["Authorization"].split()[1], ["b"], "k1")
        assert other.status_code == 422, other.text
        assert other.headers["content-type"].startswith("application/problem+json")
        assert REUSED in other.json()["detail"] and "new key" in other.json()["detail"]
        gzipped = client.post(  # the same events, encoded otherwise: a retry all the same
            "/v1/ingest",
            content=gzip.compress(ndjson(["a"]) + b"not json\n"),
            headers={**key, "Idempotency-Key": "k1", "Content-Encoding": "gzip"},
        )
        assert gzipped.headers.get("Idempotent-Replayed") == "true", gzipped.text
        assert drain(client, runtime) == {"a": 1}
    with gateway_in_process(live, bootstrap=False) as (client, runtime, _):  # from SQLite now
        again = client.post(
            "/v1/ingest", content=ndjson(["c"]), headers={**key, "Idempotency-Key": "k1"}
        )
        assert again.status_code == 422, again.text
        assert drain(client, runtime) == {"a": 1}  # the bucket holds the first request only


def test_a_receipt_without_a_body_hash_replays_as_before(tmp_path: Path) -> None:
    """Receipts written before bodies were hashed (in a WAL or SQLite from an older version)."""
    store = IdempotencyStore(tmp_path / "i.sqlite3", window_seconds=60)
    old = store.receipt("o", "s", key="k", answer=(200, {"accepted": 1}))
    old.pop("sha256", None)
    store.committed([old])
    assert store.lookup("o", "s", "k", sha256="0" * 64) == (200, {"accepted": 1})
    store.releasing([old])
    assert store.lookup("o", "s", "k", sha256="0" * 64) == (200, {"accepted": 1})
    new = store.receipt("o", "s", key="n", answer=(200, {}), sha256="1" * 64)
    store.releasing([new])
    assert store.lookup("o", "s", "n", sha256="1" * 64) == (200, {})
    with pytest.raises(ValidationFailed, match=REUSED):
        store.lookup("o", "s", "n", sha256="2" * 64)
    store.close()


# ---- astralog_ingest_events_accepted_total counts what the WAL stored -----------------------


def _accepted(client: TestClient, operator: dict[str, str], fmt: str) -> float:
    text = client.get("/metrics", headers=operator).text
    match = re.search(
        rf'^astralog_ingest_events_accepted_total{{format="{fmt}"}} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_accepted_events_metric_counts_only_rows_appended_to_the_wal(tmp_path: Path) -> None:
    with gateway(tmp_path / "live") as (client, runtime):
        boot = runtime.bootstrap()
        assert boot is not None
        op, key = bearer(boot.operator_token), boot.ingest_key
        send(client, key, ["a", "b"], "k1")
        send(client, key, ["a", "b"], "k1")  # a replay: nothing appended
        assert _accepted(client, op, "json") == 2
        es = bearer(key)
        client.post("/v1/es/_bulk", content=_bulk_body(["x", "y"]), headers=es)
        client.post("/v1/es/_bulk", content=_bulk_body(["x", "y", "z"]), headers=es)  # 409, 409
        index_x = b'{"index":{"_index":"web","_id":"x"}}\n{"marker":"x"}\n'
        noop = client.post("/v1/es/_bulk", content=index_x, headers=es)
        assert noop.json()["items"][0]["index"]["result"] == "noop"
        assert _accepted(client, op, "elasticsearch") == 3
        assert drain(client, runtime) == {"a": 1, "b": 1, "x": 1, "y": 1, "z": 1}
