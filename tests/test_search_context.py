"""GET /v1/search/context: the events around one event, from its source, under search's rules.

A real app (lifespan, WAL, flusher) with events in through the ingest endpoint; the expected
neighbours are read back through the search API, so context and search agree on order (time,
then event id) by construction of the test, not by a copy of the engine's SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.conftest import bearer, json_lines, ok, problem
from tests.ingest_helpers import fast_flush_settings
from tests.rbac_helpers import add_member
from tests.search_corpus import add_source, ingest, search_all


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return fast_flush_settings(tmp_path)


@pytest.fixture
def seeded(client: TestClient, boot: Bootstrap, admin: dict[str, str]) -> dict[str, Any]:
    """Source "app": 40 events a second apart (hosts web-1/web-2, services api/worker) with a
    burst of 4 at one instant; source "other": 40 events interleaved in time."""
    app, other = str(boot.source["id"]), add_source(client, admin, "other")
    start = datetime.now(UTC) - timedelta(minutes=30)
    events = []
    for i in range(40):
        at = start + timedelta(seconds=i if i < 20 or i > 23 else 20)  # 20..23: one instant
        service = "api" if i % 3 else "worker"
        events.append({"timestamp": at.isoformat(), "message": f"app {i}", "n": i,
                       "host": f"web-{i % 2 + 1}", "service": service})  # fmt: skip
    ingest(client, boot.ingest_key, json_lines(events))
    noise = [{"timestamp": (start + timedelta(seconds=i, milliseconds=500)).isoformat(),
              "message": f"other {i}"} for i in range(40)]  # fmt: skip
    ingest(client, other[1], json_lines(noise))
    timeline, _ = search_all(client, admin, {"start": "now-1h", "sources": [app]}, limit=1000)
    assert len(timeline) == 40
    return {"app": app, "other": other[0], "timeline": timeline[::-1]}  # oldest first


def _context(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    return client.get("/v1/search/context", params=params, headers=headers)


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


def test_neighbours_from_the_same_source_in_time_order_with_the_anchor_marked(
    client: TestClient, admin: dict[str, str], seeded: dict[str, Any]
) -> None:
    timeline = seeded["timeline"]
    for at in (10, 21, 22):  # 21 and 22 sit inside the burst: ties go by event id
        anchor = timeline[at]["event_id"]
        answer = ok(_context(client, admin, event_id=anchor, before=5, after=3))
        assert _ids(answer["events"]) == _ids(timeline[at - 5 : at + 4])
        assert answer["anchor_index"] == 5
        marks = [e["context"] for e in answer["events"]]
        assert marks == ["before"] * 5 + ["anchor"] + ["after"] * 3
        assert {e["source_id"] for e in answer["events"]} == {seeded["app"]}
        assert answer["more_before"] and answer["more_after"]


def test_the_ends_of_the_source_and_zero_neighbours(
    client: TestClient, admin: dict[str, str], seeded: dict[str, Any]
) -> None:
    timeline = seeded["timeline"]
    first = ok(_context(client, admin, event_id=timeline[1]["event_id"], before=10, after=2))
    assert _ids(first["events"]) == _ids(timeline[:4])
    assert first["more_before"] is False and first["more_after"] is True
    last = ok(_context(client, admin, event_id=timeline[-1]["event_id"], before=2, after=10))
    assert _ids(last["events"]) == _ids(timeline[-3:]) and last["more_after"] is False
    alone = ok(_context(client, admin, event_id=timeline[5]["event_id"], before=0, after=0))
    assert _ids(alone["events"]) == [timeline[5]["event_id"]]
    assert alone["more_before"] and alone["more_after"]


@pytest.mark.parametrize("same", ["host", "service"])
def test_same_host_or_service(
    client: TestClient, admin: dict[str, str], seeded: dict[str, Any], same: str
) -> None:
    timeline = seeded["timeline"]
    value = (
        (lambda e: e["resource"].get("host.name")) if same == "host" else (lambda e: e["service"])
    )
    anchor = timeline[15]
    peers = [e for e in timeline if value(e) == value(anchor)]
    at = _ids(peers).index(anchor["event_id"])
    answer = ok(_context(client, admin, event_id=anchor["event_id"], before=3, after=3, same=same))
    assert _ids(answer["events"]) == _ids(peers[at - 3 : at + 4])


def test_retention_and_erasure_apply_to_the_anchor_and_its_neighbours(
    client: TestClient, runtime: Runtime, boot: Bootstrap, admin: dict[str, str],
    seeded: dict[str, Any],
) -> None:  # fmt: skip
    app, timeline = seeded["app"], seeded["timeline"]
    erased = timeline[9]
    stamp = erased["timestamp"]  # YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
    seconds = datetime.fromisoformat(stamp[:19] + "+00:00").timestamp()
    ts_ns = int(seconds) * 10**9 + int(stamp[20:29])
    runtime.data.vectors.add(str(boot.org["id"]), "era_ctx", [(app, ts_ns, erased["event_id"])])
    answer = ok(_context(client, admin, event_id=timeline[10]["event_id"], before=2, after=0))
    assert _ids(answer["events"]) == _ids([timeline[7], timeline[8], timeline[10]])
    problem(_context(client, admin, event_id=erased["event_id"]), 404)

    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    ingest(client, boot.ingest_key, json_lines([{"timestamp": old, "message": "three days old"}]))
    found, _ = search_all(client, admin, {"start": "now-4d", "query": '"three days old"'}, 10)
    anchor = ok(_context(client, admin, event_id=timeline[0]["event_id"], before=5, after=0))
    assert _ids(anchor["events"]) == [*_ids(found), timeline[0]["event_id"]]  # days back
    assert client.put(f"/v1/sources/{app}/retention", json={"days": 1}, headers=admin).is_success
    anchor = ok(_context(client, admin, event_id=timeline[0]["event_id"], before=5, after=0))
    assert _ids(anchor["events"]) == [timeline[0]["event_id"]] and not anchor["more_before"]
    problem(_context(client, admin, event_id=found[0]["event_id"]), 404)


def test_only_readers_of_the_source_see_it(
    client: TestClient, runtime: Runtime, boot: Bootstrap, admin: dict[str, str],
    seeded: dict[str, Any],
) -> None:  # fmt: skip
    anchor = seeded["timeline"][5]["event_id"]
    problem(_context(client, {}, event_id=anchor), 401)
    problem(_context(client, bearer(boot.ingest_key), event_id=anchor), 403)
    narrow = client.post(
        "/v1/tokens", json={"name": "n", "scopes": ["sources:read"]}, headers=admin
    )
    problem(_context(client, bearer(narrow.json()["token"]), event_id=anchor), 403)
    org = str(boot.org["id"])
    elsewhere = add_member(runtime, org, "viewer", [seeded["other"]], tag="-other")
    assert (
        "no event" in problem(_context(client, elsewhere.headers, event_id=anchor), 404)["detail"]
    )
    granted = add_member(runtime, org, "viewer", [seeded["app"]], tag="-app")
    assert (
        len(ok(_context(client, granted.headers, event_id=anchor, before=1, after=0))["events"])
        == 2
    )
    reads = [r.event() for r in runtime.control.store.records(org_id=org) if r.type == "LogsRead"]
    assert any(getattr(e, "action", None) == "context" for e in reads)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 422),
        ({"event_id": ""}, 422),
        ({"event_id": "x' OR 1=1 --"}, 422),
        ({"event_id": "a" * 65}, 422),
        ({"event_id": "\u00e9t\u00e9"}, 422),
        ({"event_id": "0190", "before": -1}, 422),
        ({"event_id": "0190", "after": 501}, 422),
        ({"event_id": "0190", "before": "ten"}, 422),
        ({"event_id": "0190", "before": 10**30}, 422),
        ({"event_id": "0190", "same": "org"}, 422),
        ({"event_id": "0190", "start": "yesterday-ish"}, 400),
        ({"event_id": "0190", "start": "now", "end": "now-1h"}, 400),
        ({"event_id": "0190", "start": "now-400d"}, 400),
        ({"event_id": "0190", "start": "x" * 65}, 422),
        ({"event_id": "0190"}, 404),
    ],
)
def test_hostile_input_is_a_4xx_problem(
    client: TestClient, admin: dict[str, str], params: dict[str, Any], status: int
) -> None:
    problem(_context(client, admin, **params), status)


@pytest.mark.parametrize(
    "raw", ["event_id=%ED%A0%80", "event_id=%00", "event_id=a%0Ab", "event_id=a&before=1e3"]
)
def test_undecodable_or_control_characters_are_a_422(
    client: TestClient, admin: dict[str, str], raw: str
) -> None:
    problem(client.get(f"/v1/search/context?{raw}", headers=admin), 422)
