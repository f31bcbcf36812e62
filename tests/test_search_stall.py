"""A search that times out or loses its client leaves the gateway answering everyone else.

A real app (lifespan, WAL, flusher) and a regex that costs RE2 about a second a body: the search
times out while DuckDB is still inside the statement, and the other requests must not wait for
that statement to unwind. Context's more_before/more_after are read over the same range as its
events, whatever the count asked for.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap
from astralog.settings import Settings
from tests.conftest import bearer
from tests.ingest_helpers import fast_flush_settings
from tests.search_corpus import ingest, search_all


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return fast_flush_settings(tmp_path)


def _short_timeout(client: TestClient, boot: Bootstrap) -> None:
    plan = client.put(
        f"/v1/orgs/{boot.org['id']}/plan",
        json={"plan": "enterprise", "overrides": {"query_timeout_seconds": 0.5}},
        headers=bearer(boot.operator_token),
    )
    assert plan.status_code == 200, plan.text


@pytest.mark.slow
def test_a_timed_out_search_does_not_stall_every_other_request(
    client: TestClient, boot: Bootstrap
) -> None:
    """The timed-out statement unwinds in its own thread; /healthz answers meanwhile."""
    _short_timeout(client, boot)
    # Random a/b bodies just under the 256 KiB string limit: no DFA state cache holds the
    # windows of 141 letters, so RE2 spends about a quarter of a second on each, uninterruptibly.
    letters = random.Random(19)
    lines = [json.dumps({"message": "".join(letters.choices("ab", k=260_000))}) for _ in range(12)]
    ingest(client, boot.ingest_key, ("\n".join(lines) + "\n").encode())
    body = {"query": "/a[ab]{140}x/", "start": "now-1h"}
    answers: list[httpx.Response] = []
    took: list[float] = []

    def search() -> None:
        started = time.monotonic()
        answers.append(client.post("/v1/search", json=body, headers=bearer(boot.admin_token)))
        took.append(time.monotonic() - started)

    slow = threading.Thread(target=search)
    slow.start()
    waits = []
    for _ in range(8):
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        waits.append(time.monotonic() - started)
        time.sleep(0.2)
    slow.join()
    assert answers[0].status_code == 408, answers[0].text
    assert took[0] < 2.0, f"the 408 waited {took[0]:.1f} s for the statement to unwind"
    assert max(waits) < 1.0, f"/healthz waited {max(waits):.1f} s behind one timed-out search"


def test_more_before_with_before_zero_sees_past_the_first_minute(
    client: TestClient, boot: Bootstrap
) -> None:
    """before=0 answers whether there are older events; one five minutes back is one."""
    admin = bearer(boot.admin_token)
    at = datetime.now(UTC) - timedelta(minutes=20)
    lines = [
        {"timestamp": (at + timedelta(minutes=m)).isoformat(), "message": f"m{m}"} for m in (0, 5)
    ]
    ingest(client, boot.ingest_key, ("\n".join(map(json.dumps, lines)) + "\n").encode())
    events, _ = search_all(client, admin, {"start": "now-1h"}, limit=10)
    newest, oldest = events[0]["event_id"], events[-1]["event_id"]

    def context(event_id: str, **counts: int) -> dict[str, Any]:
        params: dict[str, Any] = {"event_id": event_id, **counts}
        answer = client.get("/v1/search/context", params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    assert len(context(newest, before=1)["events"]) == 2  # the older event is there
    assert context(newest, before=0)["more_before"] is True
    assert context(oldest, after=0)["more_after"] is True
    assert context(oldest, before=0)["more_before"] is False
