"""Members: invitations, roles, owner protection, deprovisioning, per-source read grants on every
read path, and the audit record of each read.

A real app (lifespan, WAL, flusher) on its own data directory; people are made through the
control plane's commands and act with their personal tokens or browser sessions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.api.routes import search as search_routes
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.rbac_helpers import add_member
from tests.search_corpus import add_source, ingest, seal_and_flush
from tests.test_search_api import ENDPOINTS, _call, _read_tail

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Overrides conftest's: segments seal and flush within a fraction of a second."""
    return load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False, "segment_max_age_seconds": 0.2},
        flush={"interval_seconds": 0.1},
    )


@pytest.fixture
def admin(boot: Bootstrap) -> dict[str, str]:
    return bearer(boot.admin_token)


@pytest.fixture
def org(boot: Bootstrap) -> str:
    return str(boot.org["id"])


def _lines(*events: dict[str, Any]) -> bytes:
    return ("\n".join(json.dumps(e) for e in events) + "\n").encode()


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


def _activity(runtime: Runtime, kind: str, org_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(r.payload)
        for r in runtime.control.store.records(limit=100_000)
        if r.type == kind and r.org_id == org_id
    ]


# ---------------------------------------------------------------------------------------------
# Per-source grants on every read path


@pytest.fixture
def two_sources(
    client: TestClient, runtime: Runtime, boot: Bootstrap, admin: dict[str, str]
) -> tuple[str, str, str]:
    """web (the bootstrap source) and db, each with 3 committed events; db's key."""
    web = str(boot.source["id"])
    db, db_key = add_source(client, admin, "db")
    ingest(client, boot.ingest_key, _lines(*({"message": "web hit", "src": "web"},) * 3))
    ingest(client, db_key, _lines(*({"message": "db query", "src": "db"},) * 3))
    seal_and_flush(runtime)
    return web, db, db_key


def _sources_seen(client: TestClient, endpoint: str, headers: dict[str, str]) -> set[str]:
    """Which sources' events one read returned (tail is read separately)."""
    answer = _call(client, endpoint, headers, start="now-1h")
    assert answer.status_code == 200, answer.text
    if endpoint == "search":
        return {e["source_id"] for e in answer.json()["events"]}
    if endpoint == "histogram":
        total = sum(b["total"] for b in answer.json()["buckets"])
        return {"web"} if total == 3 else {f"{total} events"}
    if endpoint == "facets":
        return {f["value"] for f in answer.json()["facets"]["source"]}
    return {json.loads(line)["source_id"] for line in answer.text.splitlines()}


def test_a_member_reads_only_the_sources_granted(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, _, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    expected = {"search": {web}, "histogram": {"web"}, "facets": {web}, "export": {web}}
    for endpoint, sources in expected.items():
        assert _sources_seen(client, endpoint, viewer.headers) == sources, endpoint
    listed = client.get("/v1/sources", headers=viewer.headers).json()
    assert [s["id"] for s in listed] == [web]
    retention = client.get("/v1/retention", headers=viewer.headers).json()
    assert [s["source_id"] for s in retention["sources"]] == [web]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_ungranted_source_answers_like_an_unknown_one(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str],
    endpoint: str,
) -> None:  # fmt: skip
    web, db, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    refused = _problem(_call(client, endpoint, viewer.headers, sources=[db]), 400)
    unknown = _problem(_call(client, endpoint, viewer.headers, sources=["src_nope"]), 400)
    assert refused["detail"] == unknown["detail"].replace("src_nope", db)
    allowed = _call(client, endpoint, viewer.headers, sources=[web])
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize("path", ["", "/keys"])
def test_an_ungranted_source_is_not_found_by_id(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str], path: str
) -> None:
    web, db, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    refused = _problem(client.get(f"/v1/sources/{db}{path}", headers=viewer.headers), 404)
    unknown = _problem(client.get(f"/v1/sources/src_nope{path}", headers=viewer.headers), 404)
    assert refused["detail"] == unknown["detail"].replace("src_nope", db)
    assert client.get(f"/v1/sources/{web}{path}", headers=viewer.headers).status_code == 200


def test_an_ingest_account_provisions_keys_only_for_its_sources(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, db, db_key = two_sources
    shipper = add_member(runtime, org, "ingest", [web])
    assert client.post(f"/v1/sources/{web}/keys", headers=shipper.headers).status_code == 201
    _problem(client.post(f"/v1/sources/{db}/keys", headers=shipper.headers), 404)
    key_id = db_key.split("_")[1]
    for verb in ("rotate", "revoke"):
        url = f"/v1/sources/{db}/keys/{key_id}/{verb}"
        _problem(client.post(url, json={}, headers=shipper.headers), 404)
    # no reads: an ingest account provisions keys, it does not search
    _problem(_call(client, "search", shipper.headers), 403)


@pytest.fixture
def fast_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_routes, "TAIL_POLL_SECONDS", 0.1)


@pytest.mark.usefixtures("fast_tail")
def test_a_members_tail_shows_only_granted_sources(
    client: TestClient, runtime: Runtime, org: str, boot: Bootstrap,
    two_sources: tuple[str, str, str],
) -> None:  # fmt: skip
    web, _, db_key = two_sources
    member = add_member(runtime, org, "member", [web])

    def send() -> None:
        ingest(client, db_key, _lines({"message": "db live", "n": "db"}))
        ingest(client, boot.ingest_key, _lines({"message": "web live", "n": "first"}))
        time.sleep(0.3)  # a few polls, in which db's event would have shown
        ingest(client, db_key, _lines({"message": "db live", "n": "db"}))
        ingest(client, boot.ingest_key, _lines({"message": "web live", "n": "last"}))

    got = _read_tail(client, member.headers, "", send, lambda g: g[-1]["body"] == "web live"
                     and g[-1]["attributes"]["n"] == "last")  # fmt: skip
    live = [e["attributes"]["n"] for e in got if e["body"].endswith("live")]
    assert live == ["first", "last"]
    assert {e["source_id"] for e in got} == {web}


# ---------------------------------------------------------------------------------------------
# The read audit


def test_every_read_is_audited_with_who_sources_range_and_count(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, db, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    before = len(_activity(runtime, "LogsRead", org))
    for endpoint in ("search", "histogram", "facets", "export"):
        assert _call(client, endpoint, viewer.headers, start="now-1h").status_code == 200
    with client.stream("GET", "/v1/search/tail", headers=viewer.headers) as stream:
        assert stream.status_code == 200
        next(stream.iter_lines())
    records = _activity(runtime, "LogsRead", org)[before:]
    assert [r["action"] for r in records] == ["search", "histogram", "facets", "export", "tail"]
    for record in records:
        assert record["principal"] == f"person:{viewer.id}"
        assert record["sources"] == [web], record
        assert record["start"] < record["end"]
    assert [r["events"] for r in records[:4]] == [3, 3, 3, 3]
    # a refused read is not a read
    _call(client, "search", viewer.headers, sources=[db])
    assert len(_activity(runtime, "LogsRead", org)) == before + 5
