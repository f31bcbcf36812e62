"""GET /v1/search/fields: the field names the search box suggests, from a bounded sample.

A real app (lifespan, WAL, flusher) with events in through the ingest endpoint, like a shipper's.
The answer obeys search's rules: the caller's org, the sources the caller may read, logs:read,
retention and the plan's timeout; hostile input is a 4xx problem document, never a 500.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from astralog.query import fields as field_sample
from astralog.query.engine import Session
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.conftest import bearer, json_lines, ok, problem
from tests.ingest_helpers import fast_flush_settings
from tests.rbac_helpers import add_member
from tests.search_corpus import add_source, ingest


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return fast_flush_settings(tmp_path)


def _fields(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    return client.get("/v1/search/fields", params={"start": "now-1h", **params}, headers=headers)


def _counts(body: dict[str, Any], *, well_known: bool) -> dict[str, int]:
    return {f["name"]: f["count"] for f in body["fields"] if f["well_known"] is well_known}


@pytest.fixture
def seeded(client: TestClient, boot: Bootstrap, admin: dict[str, str]) -> dict[str, str]:
    """Source "app": 12 events (http.status in all, user.id in 4, a key with a space in 2);
    source "secret": 3 events with an attribute only it holds."""
    events = [
        {"message": f"req {i}", "level": "info", "service": "api", "host": "web-1",
         "http": {"status": 200 + i}, **({"user": {"id": i}} if i % 3 == 0 else {}),
         **({"has space": "x", "a:b": "y", "severity": "warn"} if i < 2 else {})}
        for i in range(12)
    ]  # fmt: skip
    ingest(client, boot.ingest_key, json_lines(events))
    secret, key = add_source(client, admin, "secret")
    ingest(client, key, json_lines([{"message": "s", "payroll.salary": 1}] * 3))
    return {"app": str(boot.source["id"]), "secret": secret}


def test_well_known_fields_first_then_attributes_by_presence(
    client: TestClient, admin: dict[str, str], seeded: dict[str, str]
) -> None:
    body = ok(_fields(client, admin, sources=seeded["app"]))
    names = [f["name"] for f in body["fields"]]
    known = _counts(body, well_known=True)
    assert names[: len(known)] == list(known), "well-known fields come first"
    assert known["level"] == known["service"] == known["host"] == known["body"] == 12
    assert known["trace_id"] == 0
    attributes = _counts(body, well_known=False)
    # severity is the level (the language reads it so); a name with a space or colon cannot
    # be typed as a field: neither is suggested.
    assert attributes == {"http.status": 12, "user.id": 4}
    assert body["sampled"] == 12 and body["truncated"] is False
    assert body["range"]["start"] < body["range"]["end"] and body["partial"] is False


def test_a_prefix_narrows_in_any_case_and_a_limit_truncates(
    client: TestClient, admin: dict[str, str], seeded: dict[str, str]
) -> None:
    body = ok(_fields(client, admin, prefix="HT"))
    assert [f["name"] for f in body["fields"]] == ["http.status"]
    body = ok(_fields(client, admin, prefix="s"))
    assert [f["name"] for f in body["fields"]] == ["service", "source", "span_id", "scope"]
    body = ok(_fields(client, admin, prefix="zz"))
    assert body["fields"] == [] and body["truncated"] is False
    body = ok(_fields(client, admin, limit=1, prefix="u"))
    assert [f["name"] for f in body["fields"]] == ["user.id"] and body["truncated"] is False
    body = ok(_fields(client, admin, limit=1))
    assert _counts(body, well_known=False) == {"http.status": 12} and body["truncated"] is True


def test_the_sample_is_bounded(
    client: TestClient, admin: dict[str, str], seeded: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(field_sample, "SAMPLE_ROWS", 5)
    body = ok(_fields(client, admin, sources=seeded["app"]))
    assert body["sampled"] == 5 and body["sample_limit"] == 5
    assert _counts(body, well_known=True)["level"] == 5
    assert _counts(body, well_known=False)["http.status"] == 5


def test_only_readable_sources_and_only_our_org(
    client: TestClient, runtime: Runtime, boot: Bootstrap, admin: dict[str, str],
    seeded: dict[str, str],
) -> None:  # fmt: skip
    assert "payroll.salary" in _counts(ok(_fields(client, admin)), well_known=False)
    org = str(boot.org["id"])
    viewer = add_member(runtime, org, "viewer", [seeded["app"]], tag="-app")
    seen = _counts(ok(_fields(client, viewer.headers)), well_known=False)
    assert "payroll.salary" not in seen and "http.status" in seen
    theirs = problem(_fields(client, viewer.headers, sources=seeded["secret"]), 400)
    unknown = problem(_fields(client, viewer.headers, sources="src_nope"), 400)
    assert theirs["detail"].replace(seeded["secret"], "X") == unknown["detail"].replace(
        "src_nope", "X"
    )
    reads = [r.event() for r in runtime.control.store.records(org_id=org) if r.type == "LogsRead"]
    fields_reads = [e for e in reads if getattr(e, "action", None) == "fields"]
    assert fields_reads and getattr(fields_reads[-1], "sources", None) == [seeded["app"]]

    other = client.post(
        "/v1/orgs", json={"name": "globex", "plan": "pro"}, headers=bearer(boot.operator_token)
    )
    assert other.status_code == 201, other.text
    token = client.post(
        f"/v1/orgs/{other.json()['id']}/tokens",
        json={"name": "admin", "scopes": ["logs:read"]},
        headers=bearer(boot.operator_token),
    )
    assert token.status_code == 201, token.text
    theirs_body = ok(_fields(client, bearer(token.json()["token"])))
    assert _counts(theirs_body, well_known=False) == {} and theirs_body["sampled"] == 0


def test_logs_read_is_required(client: TestClient, boot: Bootstrap, admin: dict[str, str]) -> None:
    narrow = client.post(
        "/v1/tokens", json={"name": "n", "scopes": ["sources:read"]}, headers=admin
    )
    assert "logs:read" in problem(_fields(client, bearer(narrow.json()["token"])), 403)["detail"]
    problem(_fields(client, bearer(boot.ingest_key)), 403)
    problem(_fields(client, {}), 401)


HOSTILE: list[tuple[dict[str, str], int, str]] = [
    ({"prefix": "a:b"}, 400, "cannot begin a field name"),
    ({"prefix": "x y"}, 400, "cannot begin a field name"),
    ({"prefix": "'; DROP TABLE logs; --"}, 400, "cannot begin a field name"),
    ({"prefix": "%"}, 400, "cannot begin a field name"),
    ({"prefix": "a\x00b"}, 400, "cannot begin a field name"),
    ({"prefix": "a" * 257}, 422, "256"),
    ({"start": "yesterday"}, 400, "is not a time"),
    ({"start": "now", "end": "now-1h"}, 400, "the time range is empty"),
    ({"start": "99999-01-01"}, 400, "is not a time"),
    ({"start": "now-1" + "0" * 70 + "d"}, 422, "64"),
    ({"limit": "0"}, 422, "greater than or equal to 1"),
    ({"limit": "501"}, 422, "less than or equal to 500"),
    ({"limit": "1e9"}, 422, "integer"),
    ({"sources": "src_nope,,"}, 400, "unknown sources"),
    ({"sources": ",".join(f"s{i}" for i in range(500))}, 400, "unknown sources"),
]


def test_hostile_input_is_a_problem_document(client: TestClient, admin: dict[str, str]) -> None:
    """One app for every case (each would cost a start-up); a failure names its case."""
    for params, status, words in HOSTILE:
        response = _fields(client, admin, **params)
        assert response.status_code == status, (params, response.text)
        assert words in json.dumps(problem(response, status)), (params, response.text)
    for raw in ("%ED%A0%80", "%FF", "%00", "%C0%AF", "a%2Cb"):  # bytes no client would send
        response = client.get(f"/v1/search/fields?prefix={raw}", headers=admin)
        assert "cannot begin a field name" in problem(response, 400)["detail"], raw


def test_a_slow_sample_is_interrupted_at_its_own_timeout(
    client: TestClient, admin: dict[str, str], seeded: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    interrupted = threading.Event()

    def heavy(session: Session, **_: Any) -> Any:
        try:  # minutes of work on the session's own connection, unless it is interrupted
            session.conn.execute("SELECT count(*) FROM range(1000000000000)").fetchall()
        except duckdb.InterruptException:
            interrupted.set()
            raise
        raise AssertionError("the heavy statement finished: it was not interrupted")

    monkeypatch.setattr(field_sample, "sample", heavy)
    monkeypatch.setattr(field_sample, "TIMEOUT_SECONDS", 0.3)
    started = time.monotonic()
    body = problem(_fields(client, admin), 408)
    assert time.monotonic() - started < 5 and "narrow the time range" in body["detail"]
    assert interrupted.wait(5), "DuckDB was never told to stop"
