"""Hostile inputs found by a second review: each is refused with a 4xx or answered correctly,
and none costs the service more than a linear amount of work or an open connection forever."""

from __future__ import annotations

import gzip
import time

import pytest
from fastapi.testclient import TestClient

from astralog.errors import BadRequest
from astralog.ingest.decode import MAX_GZIP_MEMBERS, decompress
from astralog.runtime import Bootstrap
from tests.conftest import bearer

_EVENT = b'{"message":"m"}\n'


# ---- decompression stays linear -------------------------------------------------------------


def test_many_gzip_members_are_refused_without_quadratic_work() -> None:
    body = gzip.compress(_EVENT) + gzip.compress(b"") * 60_000  # 1.2 MB
    started = time.process_time()
    with pytest.raises(BadRequest, match="more than 10000 members"):
        decompress(body, "gzip", 100 << 20)
    # A complexity guard, not a benchmark: the quadratic decoder took 7 s of CPU here, a linear
    # one takes a few milliseconds, so a bound this generous never flakes on a busy machine.
    assert time.process_time() - started < 1.0


def test_gzip_members_up_to_the_cap_decode_in_linear_time() -> None:
    body = gzip.compress(_EVENT) * 2 + gzip.compress(b"") * (MAX_GZIP_MEMBERS - 2) + b"\0" * 9
    started = time.process_time()
    assert decompress(body, "gzip", 100 << 20) == _EVENT * 2
    assert time.process_time() - started < 1.0  # same guard as above: 0.13 s when quadratic


def test_a_many_member_gzip_body_is_a_400_over_http(client: TestClient, boot: Bootstrap) -> None:
    body = gzip.compress(_EVENT) + gzip.compress(b"") * 60_000
    headers = {**bearer(boot.ingest_key), "content-encoding": "gzip"}
    response = client.post("/v1/ingest", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "members" in response.json()["detail"]


# ---- the root Elasticsearch routes claim only Elasticsearch's paths --------------------------


@pytest.mark.parametrize(
    "path", ["/Logs/_Bulk", "/logs/_DOC/1", "/logs/_Create/1", "/v1/es/Logs/_BULK", "/_Bulk"]
)
def test_a_document_write_in_another_case_is_refused_not_acknowledged(
    client: TestClient, boot: Bootstrap, path: str
) -> None:
    body = b'{"index":{}}\n{"message":"m"}\n'
    response = client.put(path, content=body, headers=bearer(boot.ingest_key))
    # Acknowledging it would drop the event the shipper thinks it stored.
    assert response.status_code == 400, response.text
    assert "not supported" in response.json()["error"]["reason"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/v1/sources/_x/retention", 403),
        ("PUT", "/v1/orgs/_x/plan", 404),  # operator-only: hidden from others
        ("DELETE", "/v1/connectors/_x", 403),
        ("PUT", "/v1/sources/_x/unknown", 404),
        ("PUT", "/loki/api/v1/_push", 404),
        ("PUT", "/api/prom/_x", 404),
        ("PUT", "/docs/assets/_x/y.js", 405),
        ("PUT", "/ui/_x", 405),
    ],
)
def test_astralog_paths_with_an_underscore_reach_their_own_routes(
    client: TestClient, boot: Bootstrap, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, json={"days": 1}, headers=bearer(boot.ingest_key))
    assert response.status_code == status, response.text
    assert "X-Elastic-Product" not in response.headers
    assert response.headers["content-type"].startswith("application/problem+json")
