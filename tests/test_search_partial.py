"""A destination that cannot be reached costs a search its batches, not the whole answer.

The org writes to the embedded bucket, then to an S3 bucket on its own ``moto_server``, then to
the embedded bucket again; the moto server is then stopped, so its endpoint really refuses
connections. Search, histogram and facets answer with what the other destinations hold and a
warning naming the missing destination and the time range of its batches; an export (a file with
no place for a warning) and a search whose only data is there still fail, naming it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect

from astralog.runtime import LOCAL_DESTINATION, Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.browser import events_around_now, running_ui, shot
from tests.conftest import bearer
from tests.s3_server import MotoServer, start_moto_server
from tests.test_byob import (
    FAST,
    LOOPBACK,
    Events,
    activate,
    committed,
    create_s3,
    s3_config,
    s3_keys,
)

pytest_plugins = ["tests.browser"]  # playwright_browser


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", storage=LOOPBACK, **FAST)


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    """A server of this test's own: the test stops it."""
    with start_moto_server() as server:
        yield server


def _iso_ns(text: str) -> int:
    """An RFC 3339 UTC time to the nanosecond (datetime holds microseconds)."""
    head, _, fraction = text.removesuffix("Z").partition(".")
    seconds = int(datetime.fromisoformat(head + "+00:00").timestamp())
    return seconds * 10**9 + int(fraction.ljust(9, "0"))


def _post(client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = client.post(f"/v1/search{path}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_an_unreachable_destination_leaves_a_warning_not_a_failed_search(
    client: TestClient, runtime: Runtime, boot: Bootstrap, own_moto: MotoServer
) -> None:
    admin, org = bearer(boot.admin_token), boot.org["id"]
    events = Events()
    events.send(client, boot.ingest_key, 0, 3)
    committed(runtime, org, 3)
    cid = create_s3(client, admin, own_moto.new_bucket())["id"]
    activate(client, admin, cid)
    in_s3 = events.send(client, boot.ingest_key, 1, 4)
    committed(runtime, org, 7)
    assert client.post("/v1/connectors/deactivate", headers=admin).status_code == 204
    events.send(client, boot.ingest_key, 2, 2)
    batches = committed(runtime, org, 9)
    remote = [b for b in batches if b.destination_id == cid]
    assert sum(b.rows for b in remote) == 4
    assert all(b.destination_id in (cid, LOCAL_DESTINATION) for b in batches)

    own_moto.process.terminate()
    own_moto.process.wait(timeout=10)

    scope = {"query": f"run:{events.run}", "start": "now-1h", "end": "now"}
    found = _post(client, "", scope | {"limit": 100}, admin)
    markers = [e["attributes"]["marker"] for e in found["events"]]
    assert markers == [m for m in reversed(events.sent) if m not in in_s3]
    assert found["partial"] is True
    (warning,) = found["warnings"]
    assert warning["destination_id"] == cid
    assert warning["destination"] == f"'bucket' (s3, {cid})"
    assert warning["retryable"] is True
    assert warning["batches"] == len(remote) and warning["rows"] == 4
    # the time range the missing batches cover: exactly the events sent there
    assert _iso_ns(warning["start"]) == events.phase_start_ns(1)
    assert _iso_ns(warning["end"]) == events.phase_start_ns(1) + 3 * 10**9
    assert f"cannot reach {own_moto.endpoint_url}" in warning["detail"]
    assert "'bucket'" in warning["message"] and "4 events" in warning["message"]

    histogram = _post(client, "/histogram", scope | {"buckets": 60}, admin)
    assert sum(b["total"] for b in histogram["buckets"]) == 5
    assert histogram["partial"] is True and histogram["warnings"] == [warning]

    facets = _post(client, "/facets", scope | {"fields": ["level"]}, admin)
    assert facets["facets"]["level"] == [{"value": "INFO", "count": 5}]
    assert facets["partial"] is True and facets["warnings"] == [warning]

    # an export is a file: nothing in it could say what is missing, so it fails whole
    export = client.get("/v1/search/export", params=scope, headers=admin)
    assert export.status_code == 503, export.text
    assert cid in export.json()["detail"]

    # only the unreachable destination holds this range: nothing to answer with
    only_s3 = {"query": f"run:{events.run}", "limit": 10}
    only_s3 |= {
        "start": events.phase_start_ns(1) // 10**6,
        "end": events.phase_start_ns(2) // 10**6,
    }
    alone = client.post("/v1/search", json=only_s3, headers=admin)
    assert alone.status_code == 503, alone.text
    assert alone.json()["destination_id"] == cid


def test_a_complete_answer_says_so(client: TestClient, boot: Bootstrap) -> None:
    body = {"query": "", "start": "now-5m", "end": "now"}
    found = _post(client, "", body, bearer(boot.admin_token))
    assert found["partial"] is False and found["warnings"] == []


@pytest.mark.slow
def test_the_search_page_shows_what_is_missing(
    tmp_path: Path, own_moto: MotoServer, playwright_browser: Browser
) -> None:
    loopback = {
        "ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS": '["127.0.0.0/8"]',
        "ASTRALOG_STORAGE__ALLOW_HTTP_ENDPOINTS": "true",
        # No local copies of the bucket's objects: the page must show what the bucket holds.
        "ASTRALOG_QUERY__BATCH_CACHE_BYTES": "0",
    }
    with running_ui(tmp_path, playwright_browser, **loopback) as ui:
        gateway = ui.gateway
        bucket = own_moto.new_bucket()
        body = {"name": "archive", "kind": "s3", "secrets": s3_keys()}
        body["config"] = s3_config(bucket.name, bucket.endpoint_url, max_attempts=1)
        created = ui.api("POST", "/v1/connectors", json=body)
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        assert ui.api("POST", f"/v1/connectors/{cid}/test").json()["ok"]
        assert ui.api("POST", f"/v1/connectors/{cid}/activate").is_success
        ui.ingest(gateway.ingest_key, events_around_now(3, service="s3", level="info", message="m"))
        deadline = time.monotonic() + 20
        while not bucket.keys():
            assert time.monotonic() < deadline, "nothing reached the bucket"
            time.sleep(0.1)
        assert ui.api("POST", "/v1/connectors/deactivate").status_code == 204
        here = events_around_now(2, service="local", level="warn", message="m")
        ui.ingest(gateway.ingest_key, here)
        ui.wait_searchable("service:local", 2)
        own_moto.process.terminate()
        own_moto.process.wait(timeout=10)

        page = ui.page("/?q=m&start=now-1h")
        note = page.locator(".partial-note")
        expect(note).to_be_visible()
        expect(note).to_contain_text("Incomplete results")
        expect(note).to_contain_text(f"'archive' (s3, {cid})")
        expect(note).to_contain_text("3 events")
        expect(page.locator(".ev-list > li.ev")).to_have_count(2)
        shot(page, "search-partial")
        page.context.close()
