"""``/metrics`` is for the operator's scraper: a token, an operator token or a separate listener.

And no label names a tenant unless the operator opts in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.ingest_helpers import free_port

TOKEN = "m" * 40
LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.9", 50000)


def _app(tmp_path: Path, **overrides: Any) -> Iterator[tuple[Runtime, Bootstrap, Settings]]:
    settings = load_settings(data_dir=tmp_path / "data", wal={"fsync": False}, **overrides)
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    yield runtime, boot, settings
    runtime.close()


def _scrape(
    settings: Settings, runtime: Runtime, peer: tuple[str, int], headers: dict[str, str]
) -> httpx.Response:
    with TestClient(create_app(settings, runtime), client=peer) as client:
        return client.get("/metrics", headers=headers)


@pytest.fixture
def with_token(tmp_path: Path) -> Iterator[tuple[Runtime, Bootstrap, Settings]]:
    yield from _app(tmp_path, metrics={"token": TOKEN})


@pytest.mark.parametrize("peer", [LOOPBACK, REMOTE])
def test_with_a_token_only_the_token_or_an_operator_may_scrape(
    with_token: tuple[Runtime, Bootstrap, Settings], peer: tuple[str, int]
) -> None:
    runtime, boot, settings = with_token
    refused = {
        "anonymous": {},
        "wrong token": bearer("x" * 40),
        "org admin": bearer(boot.admin_token),
        "ingest key": bearer(boot.ingest_key),
        "basic with the token": {"Authorization": "Basic " + TOKEN},
    }
    for who, headers in refused.items():
        response = _scrape(settings, runtime, peer, headers)
        assert response.status_code == 401, (who, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "astralog_" not in response.text
    for headers in (bearer(TOKEN), bearer(boot.operator_token)):
        response = _scrape(settings, runtime, peer, headers)
        assert response.status_code == 200, response.text
        assert "astralog_ingest_events_accepted" in response.text


def test_without_a_token_development_answers_loopback_only(tmp_path: Path) -> None:
    for runtime, boot, settings in _app(tmp_path):
        assert _scrape(settings, runtime, LOOPBACK, {}).status_code == 200
        assert _scrape(settings, runtime, REMOTE, {}).status_code == 401
        assert _scrape(settings, runtime, REMOTE, bearer(boot.operator_token)).status_code == 200


def test_production_never_answers_an_anonymous_scrape(tmp_path: Path) -> None:
    production = {
        "mode": "production",
        "auth": {"key_pepper": "p" * 40},
        "storage": {"master_keys": {"k1": "A" * 43 + "="}, "active_master_key": "k1"},
    }
    for runtime, boot, settings in _app(tmp_path, **production):
        assert _scrape(settings, runtime, LOOPBACK, {}).status_code == 401
        assert _scrape(settings, runtime, LOOPBACK, bearer(boot.operator_token)).status_code == 200


def test_a_separate_listener_serves_them_and_the_main_port_does_not(tmp_path: Path) -> None:
    port = free_port()
    bind = {"bind": f"127.0.0.1:{port}", "token": TOKEN}
    for runtime, _, settings in _app(tmp_path, metrics=bind):
        with TestClient(create_app(settings, runtime), client=LOOPBACK) as client:
            assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 404
            url = f"http://127.0.0.1:{port}/metrics"
            assert httpx.get(url, timeout=5).status_code == 401
            scraped = httpx.get(url, headers=bearer(TOKEN), timeout=5)
            assert scraped.status_code == 200, scraped.text
            assert "astralog_wal_bytes" in scraped.text
        with pytest.raises(httpx.ConnectError):  # closed with the app
            httpx.get(url, timeout=2)


@pytest.mark.parametrize("bad", [{"token": "short"}, {"bind": "9464"}, {"bind": "host:99999"}])
def test_bad_metrics_settings_are_refused_at_load(tmp_path: Path, bad: dict[str, str]) -> None:
    with pytest.raises(Exception, match="ASTRALOG_METRICS"):
        load_settings(data_dir=tmp_path, metrics=bad)


# ---- no tenant in the labels -------------------------------------------------------------------

# A burst of 10 that refills at 1 event/s: the second batch is refused however slow the machine.
TINY = {"ingest_events_per_second": 1, "source_events_per_second": 1, "ingest_burst_seconds": 10}


def _rate_limited_scrape(tmp_path: Path, tenant_labels: bool) -> tuple[str, list[str]]:
    """Metrics text after a source was rate-limited, and the tenant ids that exist."""
    for runtime, boot, settings in _app(tmp_path, metrics={"tenant_labels": tenant_labels}):
        with TestClient(create_app(settings, runtime), client=LOOPBACK) as client:
            op = bearer(boot.operator_token)
            org = client.post("/v1/orgs", json={"name": "tiny", "plan": "enterprise"}, headers=op)
            org_id = org.json()["id"]
            client.put(
                f"/v1/orgs/{org_id}/plan",
                json={"plan": "enterprise", "overrides": TINY},
                headers=op,
            )
            token = client.post(
                f"/v1/orgs/{org_id}/tokens",
                json={"name": "a", "scopes": ["sources:write", "keys:write"]},
                headers=op,
            ).json()["token"]
            source = client.post("/v1/sources", json={"name": "web"}, headers=bearer(token)).json()
            key = client.post(f"/v1/sources/{source['id']}/keys", headers=bearer(token)).json()[
                "key"
            ]
            for count in (8, 5):  # the second batch overdraws a burst of 10
                body = "\n".join(f'{{"message": "m{i}"}}' for i in range(count))
                refused = client.post("/v1/ingest", content=body, headers=bearer(key))
            assert refused.status_code == 429, refused.text
            text = client.get("/metrics").text
            return text, [org_id, source["id"], str(boot.org["id"]), str(boot.source["id"])]
    raise AssertionError("unreachable")


def test_no_label_names_a_tenant_by_default(tmp_path: Path) -> None:
    text, ids = _rate_limited_scrape(tmp_path, tenant_labels=False)
    assert "astralog_ingest_rate_limited_total 1.0" in text, text
    for tenant_id in ids:
        assert tenant_id not in text
    assert "source=" not in text and "org=" not in text


def test_operators_may_opt_in_to_per_source_labels(tmp_path: Path) -> None:
    text, ids = _rate_limited_scrape(tmp_path, tenant_labels=True)
    assert f'astralog_ingest_rate_limited_total{{source="{ids[1]}"}} 1.0' in text, text
