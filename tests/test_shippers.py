"""Shippers people already run, configured as they usually are, against a real gateway.

* python-logging-loki with its default (legacy v0) emitter, through the ``logging`` module;
* the Elasticsearch Python client (``index``, ``create``, ``helpers.bulk`` with ``_id``s) at the
  root and under ``/v1/es``, and its errors surfacing as ``ApiError``;
* rsyslog's ``omelasticsearch`` from Debian, with ``server="127.0.0.1" serverport=...`` and the
  ingest key as ``uid``/``pwd``, fed over TCP. Debian 12's rsyslog conflicts with syslog-ng's
  packages, so ``scripts/install.sh test`` unpacks its debs into ``<venv>/rsyslog``.

The last section drives the same HTTP surface in-process: which requests at the root are
Elasticsearch's, and the shape of every error on those paths.
"""

from __future__ import annotations

import base64
import logging
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import (
    ApiError,
    AuthenticationException,
    BadRequestError,
    Elasticsearch,
    NotFoundError,
    helpers,
)
from fastapi.testclient import TestClient
from logging_loki import LokiHandler

from astralog.runtime import Bootstrap
from tests.conftest import bearer
from tests.gateway import Gateway, gateway_fixture  # noqa: F401 - provides `gateway`
from tests.ingest_helpers import free_port, listening_daemon

BY_MARKER = "LogAttributes['marker'] = $marker"
BY_RESOURCE_MARKER = "ResourceAttributes['marker'] = $marker"
RSYSLOG_DIR = Path(sys.prefix) / "rsyslog"


def _marker() -> str:
    return f"shipper-{uuid.uuid4().hex[:12]}"


# ---- python-logging-loki, default emitter ----------------------------------------------------


class _RecordingLokiHandler(LokiHandler):
    """The real handler; a failed send is remembered (the stock one prints it and goes on)."""

    failures: list[str]

    def handleError(self, record: logging.LogRecord) -> None:
        self.failures.append(repr(sys.exc_info()[1]))
        self.emitter.close()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/loki/api/v1/push", "/api/prom/push"])
def test_python_logging_loki_default_emitter(gateway: Gateway, path: str) -> None:
    marker = _marker()
    # Its default is the legacy emitter, and it says so with a DeprecationWarning.
    with pytest.warns(DeprecationWarning, match="api/prom/push"):
        handler = _RecordingLokiHandler(
            url=gateway.url + path,
            tags={"application": "checkout", "marker": marker},
            auth=("astralog", gateway.ingest_key),
        )
    handler.failures = []
    logger = logging.getLogger(f"shop.{marker}")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.addHandler(handler)
    before = time.time_ns()
    try:
        logger.info('order "42" placed')
        logger.warning("stock low\non two lines")
        logger.error("payment declined", extra={"tags": {"order": "42"}})
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert handler.failures == []

    rows = gateway.wait_for_rows(3, BY_RESOURCE_MARKER, {"marker": marker})
    by_body = {row["Body"]: row for row in rows}
    assert sorted(by_body) == ['order "42" placed', "payment declined", "stock low\non two lines"]
    placed, declined = by_body['order "42" placed'], by_body["payment declined"]
    assert (placed["SeverityText"], placed["SeverityNumber"]) == ("INFO", 9)
    assert (declined["SeverityText"], declined["SeverityNumber"]) == ("ERROR", 17)
    assert by_body["stock low\non two lines"]["SeverityNumber"] == 13
    assert {row["ServiceName"] for row in rows} == {"checkout"}
    assert declined["ResourceAttributes"]["order"] == "42"
    assert placed["ResourceAttributes"]["logger"] == f"shop.{marker}"
    # The emitter stamps microseconds (RFC 3339): the time is kept, not replaced on receipt.
    for row in rows:
        assert before - 10**6 <= row["Timestamp"] <= time.time_ns()
        assert row["Timestamp"] % 1000 == 0
        assert (row["OrgId"], row["SourceId"]) == (gateway.org_id, gateway.source_id)


# ---- the Elasticsearch Python client ---------------------------------------------------------


def _es(gateway: Gateway, prefix: str, key: str | None = None) -> Elasticsearch:
    return Elasticsearch(gateway.url + prefix, basic_auth=("astralog", key or gateway.ingest_key))


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["", "/v1/es"])
def test_elasticsearch_client_index_and_create(gateway: Gateway, prefix: str) -> None:
    es, marker = _es(gateway, prefix), _marker()
    assert es.info()["version"]["number"].startswith("8.")
    made = es.index(index="app", document={"message": "no id", "marker": marker})
    given = es.index(
        index="app", id=f"{marker}-given", document={"message": "id", "marker": marker}
    )
    created = es.create(
        index="audit", id=f"{marker}-new", document={"message": "create", "marker": marker}
    )
    for answer in (made, given, created):
        assert answer.meta.status == 201
        assert answer["result"] == "created" and answer["_version"] == 1
        assert answer["_shards"] == {"total": 1, "successful": 1, "failed": 0}
    assert (given["_id"], created["_id"], created["_index"]) == (
        f"{marker}-given",
        f"{marker}-new",
        "audit",
    )

    rows = {row["Body"]: row for row in gateway.wait_for_rows(3, BY_MARKER, {"marker": marker})}
    assert rows["no id"]["EventId"] == made["_id"]  # without an _id, the answer names the event
    ids = {body: row["ResourceAttributes"].get("elasticsearch.id") for body, row in rows.items()}
    assert ids == {"no id": None, "id": f"{marker}-given", "create": f"{marker}-new"}
    assert rows["create"]["ResourceAttributes"]["elasticsearch.index"] == "audit"


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["", "/v1/es"])
def test_elasticsearch_client_errors_are_api_errors(gateway: Gateway, prefix: str) -> None:
    es = _es(gateway, prefix)
    with pytest.raises(BadRequestError) as refused:
        es.index(index="app", document=[1, 2])  # type: ignore[arg-type]
    assert refused.value.body["error"]["type"] == "document_parsing_exception"
    assert "object" in refused.value.body["error"]["reason"]
    with pytest.raises(NotFoundError) as missing:
        es.search(index="app", query={"match_all": {}})
    assert missing.value.body["error"]["type"] == "resource_not_found_exception"
    with pytest.raises(ApiError) as wrong_method:
        es.perform_request("GET", "/_bulk")
    assert wrong_method.value.meta.status == 405
    assert "POST" in wrong_method.value.body["error"]["reason"]
    wrong_key = gateway.ingest_key[:-6] + "AAAAAA"
    with pytest.raises(AuthenticationException) as unauthenticated:
        _es(gateway, prefix, wrong_key).index(index="app", document={"message": "never"})
    assert "checksum" in unauthenticated.value.body["error"]["reason"]


@pytest.mark.slow
def test_elasticsearch_bulk_helper_with_ids_at_the_root(gateway: Gateway) -> None:
    es, marker = _es(gateway, ""), _marker()
    actions = [
        {"_index": "web", "_id": f"{marker}-{n}", "message": f"hit {n}", "marker": marker}
        for n in range(5)
    ]
    ok, errors = helpers.bulk(es, actions)
    assert (ok, errors) == (5, [])
    rows = gateway.wait_for_rows(5, BY_MARKER, {"marker": marker})
    ids = sorted(row["ResourceAttributes"]["elasticsearch.id"] for row in rows)
    assert ids == [f"{marker}-{n}" for n in range(5)]


# ---- rsyslog omelasticsearch -----------------------------------------------------------------

RSYSLOG_MESSAGES = 25


def _rsyslog_config(gateway: Gateway, work: Path, port: int, marker: str) -> str:
    gateway_port = gateway.url.rsplit(":", 1)[1]
    return f"""
global(workDirectory="{work}")
module(load="imtcp")
module(load="omelasticsearch")
template(name="astralog" type="list" option.jsonf="on") {{
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="level" name="syslogseverity-text" format="jsonf")
  property(outname="service" name="programname" format="jsonf")
  constant(outname="marker" value="{marker}" format="jsonf")
}}
ruleset(name="to_astralog") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{gateway_port}"
         uid="astralog" pwd="{gateway.ingest_key}" template="astralog" searchIndex="syslog"
         esVersion.major="8" bulkmode="on" errorFile="{work}/es-errors.json"
         queue.type="linkedList" queue.dequeueBatchSize="10" action.resumeRetryCount="-1")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="to_astralog")
"""


@pytest.fixture
def rsyslog(tmp_path: Path, gateway: Gateway) -> Iterator[tuple[int, str, Path]]:
    """rsyslogd from the unpacked Debian packages, listening on a loopback port."""
    binary = RSYSLOG_DIR / "usr/sbin/rsyslogd"
    assert binary.exists(), f"rsyslog is not unpacked in {RSYSLOG_DIR}: run scripts/install.sh test"
    modules = RSYSLOG_DIR / "usr/lib/x86_64-linux-gnu/rsyslog"
    port, marker, work = free_port(), _marker(), tmp_path / "work"
    work.mkdir()
    conf, log = tmp_path / "rsyslog.conf", tmp_path / "rsyslog.log"
    conf.write_text(_rsyslog_config(gateway, work, port, marker))
    command = [str(binary), "-n", "-f", str(conf), "-i", str(tmp_path / "pid"), "-M", str(modules)]
    with listening_daemon("rsyslogd", command, port, log):
        yield port, marker, work


@pytest.mark.slow
def test_rsyslog_omelasticsearch_with_server_and_port(
    gateway: Gateway, rsyslog: tuple[int, str, Path]
) -> None:
    port, marker, work = rsyslog
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [
        f"<{8 + severity}>1 {stamp} web-1 billing 77 - - message {n} of {RSYSLOG_MESSAGES}\n"
        for n, severity in zip(range(RSYSLOG_MESSAGES), [3, 4, 5, 6, 7] * 5, strict=True)
    ]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall("".join(lines).encode())

    def describe() -> str:
        errors = work / "es-errors.json"
        return errors.read_text() if errors.exists() else "rsyslog wrote no error file"

    rows = gateway.wait_for_rows(RSYSLOG_MESSAGES, BY_MARKER, {"marker": marker}, describe=describe)
    time.sleep(1.5)  # a retried batch would arrive now: each message must still be there once
    rows = gateway.rows(BY_MARKER, {"marker": marker})
    bodies = sorted(row["Body"] for row in rows)
    assert bodies == sorted(f"message {n} of {RSYSLOG_MESSAGES}" for n in range(RSYSLOG_MESSAGES))
    levels = {row["Body"].split()[1]: row["SeverityText"] for row in rows}
    assert [levels[str(n)] for n in range(5)] == ["ERROR", "WARN", "NOTICE", "INFO", "DEBUG"]
    assert {row["ServiceName"] for row in rows} == {"billing"}
    assert {row["ResourceAttributes"]["host.name"] for row in rows} == {"web-1"}
    assert {row["ResourceAttributes"]["elasticsearch.index"] for row in rows} == {"syslog"}
    assert not (work / "es-errors.json").exists()


# ---- the HTTP surface, in-process: what at the root is Elasticsearch's -------------------------


def _basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"astralog:{secret}".encode()).decode()}


def _es_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["X-Elastic-Product"] == "Elasticsearch"
    body: dict[str, Any] = response.json()
    assert body["error"]["type"] == kind and body["error"]["root_cause"][0]["type"] == kind
    assert body["status"] == status
    return body


def test_root_probe_is_told_apart_from_a_browser(client: TestClient, boot: Bootstrap) -> None:
    browser = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.headers["content-type"].startswith("text/html")
    assert client.get("/").headers["content-type"].startswith("text/html")
    for headers in (
        _basic(boot.ingest_key),
        {"Authorization": f"ApiKey {boot.ingest_key}"},
        {
            **bearer(boot.ingest_key),
            "Accept": "application/vnd.elasticsearch+json;compatible-with=8",
        },
    ):
        probe = client.get("/", headers=headers)
        assert probe.status_code == 200, probe.text
        assert probe.headers["X-Elastic-Product"] == "Elasticsearch"
        assert probe.json()["version"]["number"].startswith("8.")
        assert client.head("/", headers=headers).status_code == 200
    # A browser that sends a Basic credential still gets the page.
    page = client.get("/", headers={**_basic(boot.ingest_key), "Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    _es_error(client.get("/", headers=_basic("wrong")), 401, "security_exception")


def test_root_serves_the_bulk_and_document_apis(client: TestClient, boot: Bootstrap) -> None:
    key = _basic(boot.ingest_key)
    bulk = b'{"index":{"_id":"r-1"}}\n{"message":"root bulk"}\n'
    for method, path in (("POST", "/_bulk"), ("PUT", "/logs/_bulk")):
        answer = client.request(method, path, content=bulk, headers=key)
        assert answer.status_code == 200 and answer.json()["errors"] is False, answer.text
        assert answer.json()["items"][0]["index"]["_id"] == "r-1"
    single = {"message": "one"}
    for method, path, doc_id in (
        ("POST", "/logs/_doc", None),
        ("PUT", "/logs/_doc/d-1", "d-1"),
        ("POST", "/logs/_doc/d-2", "d-2"),
        ("PUT", "/logs/_create/c-1", "c-1"),
        ("POST", "/v1/es/logs/_create/c-2", "c-2"),
    ):
        answer = client.request(method, path, json=single, headers=key)
        assert answer.status_code == 201, (path, answer.text)
        assert answer.headers["X-Elastic-Product"] == "Elasticsearch"
        body = answer.json()
        assert (body["_index"], body["result"]) == ("logs", "created")
        assert body["_id"] == doc_id or (doc_id is None and len(body["_id"]) == 36)
    assert client.put("/_index_template/logs", json={}, headers=key).json() == {
        "acknowledged": True
    }


def test_errors_on_elasticsearch_paths_have_its_shape(client: TestClient, boot: Bootstrap) -> None:
    key = _basic(boot.ingest_key)
    _es_error(client.get("/_nodes", headers=key), 404, "resource_not_found_exception")
    _es_error(client.get("/logs/_bulk", headers=key), 405, "illegal_argument_exception")
    _es_error(client.get("/v1/es/_bulk", headers=key), 405, "illegal_argument_exception")
    _es_error(client.post("/_bulk", content=b"", headers=key), 400, "illegal_argument_exception")
    _es_error(client.post("/_bulk", content=b"x\n", headers=_basic("x")), 401, "security_exception")
    too_big = client.post(
        "/logs/_doc", content=b"{}", headers={**key, "Content-Length": str(10**12)}
    )
    _es_error(too_big, 413, "content_too_long_exception")
    document = client.put("/logs/_create/x", content=b"[1]", headers=key)
    assert "object" in _es_error(document, 400, "document_parsing_exception")["error"]["reason"]


def test_the_root_claims_only_elasticsearch_paths(client: TestClient, boot: Bootstrap) -> None:
    key = _basic(boot.ingest_key)
    # Not an Elasticsearch path: the app's own answers, problem documents as everywhere else.
    unknown = client.put("/anything", json={}, headers=key)
    assert unknown.status_code in (404, 405)
    assert unknown.headers["content-type"] == "application/problem+json"
    assert client.get("/healthz").status_code == 200
    not_elasticsearch = client.put("/v1/tokens", json={}, headers=key)
    assert not_elasticsearch.status_code >= 400
    assert not_elasticsearch.headers["content-type"] == "application/problem+json"


def test_loki_push_that_stores_nothing_is_a_400(client: TestClient, boot: Bootstrap) -> None:
    push = {"streams": [{"labels": '{app="x"}', "lines": ["lost"]}]}
    answer = client.post("/loki/api/v1/push", json=push, headers=bearer(boot.ingest_key))
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert "entries" in answer.json()["detail"]
