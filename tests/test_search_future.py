"""Events stamped ahead of now: the gateway accepts them (up to ``max_future_seconds``), search
ends at ``now`` by default, as Kibana and Grafana do, and ``now+1h`` reaches them."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from astralog.errors import BadRequest
from astralog.query.timerange import parse_instant
from astralog.runtime import Bootstrap
from tests.conftest import bearer
from tests.search_corpus import add_source, ingest

NOW = 1_800_000_000 * 10**9
HOUR = 3600 * 10**9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now+1h", NOW + HOUR),
        ("now + 90m", NOW + 90 * 60 * 10**9),
        ("now+1d/d", NOW + 86_400 * 10**9 - (NOW + 86_400 * 10**9) % (86_400 * 10**9)),
        ("now-1h", NOW - HOUR),
    ],
)
def test_relative_times_take_a_plus_offset(text: str, expected: int) -> None:
    assert parse_instant(text, NOW, "end") == expected


@pytest.mark.parametrize("text", ["now+", "now+-1h", "now++1h", "now+1y"])
def test_malformed_offsets_are_refused(text: str) -> None:
    with pytest.raises(BadRequest, match="now\\+1h"):
        parse_instant(text, NOW, "end")


def test_future_events_are_found_with_an_explicit_end(client: TestClient, boot: Bootstrap) -> None:
    admin = bearer(boot.admin_token)
    _, key = add_source(client, admin, "clock-ahead")
    ahead = time.time() + 30 * 60
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ahead))
    ingest(client, key, json.dumps({"timestamp": stamp, "message": "from the future"}).encode())
    default = client.post("/v1/search", json={"start": "now-1h"}, headers=admin)
    assert default.status_code == 200, default.text
    assert default.json()["events"] == []  # the default range ends at now
    found = client.post("/v1/search", json={"start": "now-1h", "end": "now+1h"}, headers=admin)
    assert found.status_code == 200, found.text
    assert [e["body"] for e in found.json()["events"]] == ["from the future"]
    counted = client.post(
        "/v1/search/histogram", json={"start": "now-1h", "end": "now+1h"}, headers=admin
    )
    assert sum(b["total"] for b in counted.json()["buckets"]) == 1
