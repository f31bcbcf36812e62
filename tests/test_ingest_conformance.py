"""Conformance of the ingest wire formats with what their own projects document.

Cases written here from the public documentation and REST tests of Elasticsearch's bulk API,
Loki's push API and the OpenTelemetry log data model (opentelemetry-proto's example payloads):
every metadata field and every log-record field is either honoured or refused, never ignored.
"""

from __future__ import annotations

import json
import time
from typing import Any

import cramjam
import pytest
from fastapi.testclient import TestClient

from astralog.ingest.formats import loki, parse_loki_push, parse_otlp_logs
from astralog.ingest.formats.otlp import DROPPED_ATTRIBUTES
from astralog.query.timerange import iso
from astralog.runtime import Bootstrap
from tests.conftest import bearer
from tests.ingest.parsing import NOW_NS, attrs, ctx, rows


def _ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _bulk(client: TestClient, key: str, body: bytes, path: str = "/_bulk") -> list[dict[str, Any]]:
    answer = client.post(path, content=body, headers=bearer(key))
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


# ---- Elasticsearch bulk metadata ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "status", "kind", "words"),
    [
        (
            {"_id": ""},
            400,
            "action_request_validation_exception",
            "if _id is specified it must not",
        ),
        (
            {"pipeline": "nope"},
            400,
            "illegal_argument_exception",
            "pipeline with id [nope] does not",
        ),
        ({"if_seq_no": 3, "if_primary_term": 1}, 400, "illegal_argument_exception", "append-only"),
        ({"version": 4, "version_type": "external"}, 400, "illegal_argument_exception", "version"),
        ({"require_alias": True}, 404, "index_not_found_exception", "[require_alias] request flag"),
    ],
)
def test_bulk_metadata_refused_per_item_losing_nothing_else(
    client: TestClient, boot: Bootstrap, meta: dict[str, Any], status: int, kind: str, words: str
) -> None:
    body = _ndjson(
        {"index": {"_index": "logs"}},
        {"message": "kept before"},
        {"index": {"_index": "logs", **meta}},
        {"message": "refused"},
        {"create": {"_index": "logs"}},
        {"message": "kept after"},
    )
    items = _bulk(client, boot.ingest_key, body)
    assert [next(iter(item.values()))["status"] for item in items] == [201, status, 201]
    error = items[1]["index"]["error"]
    assert error["type"] == kind and words in error["reason"], error


def test_bulk_metadata_that_is_harmless_is_accepted(client: TestClient, boot: Bootstrap) -> None:
    body = _ndjson(
        {"index": {"_index": "logs", "pipeline": "_none", "require_alias": False}},
        {"message": "a"},
        {"index": {"_index": "logs", "routing": "user1", "_type": "_doc"}},
        {"message": "b"},
        {"index": {"_index": "logs", "version_type": "internal"}},
        {"message": "c"},
    )
    assert [item["index"]["status"] for item in _bulk(client, boot.ingest_key, body)] == [201] * 3


def test_bulk_url_pipeline_and_require_alias_apply_to_every_action(
    client: TestClient, boot: Bootstrap
) -> None:
    body = _ndjson({"index": {}}, {"message": "a"}, {"create": {"pipeline": "_none"}}, {"m": 1})
    items = _bulk(client, boot.ingest_key, body, "/logs/_bulk?pipeline=enrich")
    assert items[0]["index"]["error"]["reason"] == "pipeline with id [enrich] does not exist"
    assert items[1]["create"]["status"] == 201  # its own metadata wins over the URL's
    items = _bulk(client, boot.ingest_key, body, "/logs/_bulk?require_alias=true")
    assert [items[0]["index"]["status"], items[1]["create"]["status"]] == [404, 404]


def test_op_type_create_is_answered_as_create(client: TestClient, boot: Bootstrap) -> None:
    body = _ndjson(
        {"index": {"_index": "logs", "_id": "op-1", "op_type": "create"}},
        {"message": "first"},
        {"index": {"_index": "logs", "_id": "op-1", "op_type": "create"}},
        {"message": "again"},
        {"index": {"_index": "logs", "op_type": "index"}},
        {"message": "plain"},
    )
    items = _bulk(client, boot.ingest_key, body)
    assert [list(item) for item in items] == [["create"], ["create"], ["index"]]
    # A create of a stored _id is a conflict, as it is for a create action.
    assert [items[0]["create"]["status"], items[1]["create"]["status"]] == [201, 409]
    key = bearer(boot.ingest_key)
    single = client.put("/logs/_doc/op-2?op_type=create", json={"message": "x"}, headers=key)
    assert single.status_code == 201 and single.json()["_id"] == "op-2"
    again = client.put("/logs/_doc/op-2?op_type=create", json={"message": "x"}, headers=key)
    assert again.status_code == 409, again.text


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ({"update": {"_id": "1", "_version": 2}}, "unknown parameter [_version]"),
        ({"update": {"_id": "1", "_routing": "r"}}, "unknown parameter [_routing]"),
        ({"index": {"_ttl": "1d"}}, "unknown parameter [_ttl]"),
        ({"update": {"_id": "1", "version": 2}}, "Update requests do not support versioning"),
        ({"index": {"op_type": "upsert"}}, "opType must be 'create' or 'index', found: [upsert]"),
    ],
)
def test_bulk_metadata_elasticsearch_refuses_fails_the_request(
    client: TestClient, boot: Bootstrap, action: dict[str, Any], words: str
) -> None:
    body = _ndjson({"index": {}}, {"message": "a"}, action, {"doc": {"message": "b"}})
    answer = client.post("/logs/_bulk", content=body, headers=bearer(boot.ingest_key))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "illegal_argument_exception"
    assert words in answer.json()["error"]["reason"]


def test_document_api_query_metadata_is_honoured_or_refused(
    client: TestClient, boot: Bootstrap
) -> None:
    key = bearer(boot.ingest_key)
    stale = client.put("/logs/_doc/v-1?if_seq_no=1&if_primary_term=1", json={}, headers=key)
    assert stale.status_code == 400 and "append-only" in stale.json()["error"]["reason"]
    external = client.put("/logs/_doc/v-2?version=7&version_type=external", json={}, headers=key)
    assert external.status_code == 400, external.text
    assert "version and version_type" in external.json()["error"]["reason"]
    created = client.put("/logs/_doc/v-3?version_type=internal", json={}, headers=key)
    assert created.status_code == 201, created.text
    piped = client.post("/logs/_doc?pipeline=geoip", json={"message": "x"}, headers=key)
    assert piped.status_code == 400
    assert piped.json()["error"]["reason"] == "pipeline with id [geoip] does not exist"


# ---- Loki push ---------------------------------------------------------------------------------


def _loki_protobuf(labels: str, line: str = "hello") -> bytes:
    request = loki._loki_push_request()()
    entry = request.streams.add(labels=labels).entries.add(line=line)
    entry.timestamp.seconds = 1_717_236_000
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def test_loki_quoted_label_names_parse() -> None:
    body = _loki_protobuf('{ "foo"="bar2", "environment"="prod", "service.name"="checkout" }')
    [row] = rows(parse_loki_push(body, "application/x-protobuf", ctx()))
    labels = attrs(row, "ResourceAttributes")
    assert labels == {"foo": "bar2", "environment": "prod", "service.name": "checkout"}
    assert row["ServiceName"] == "checkout"


@pytest.mark.parametrize(
    ("labels", "service"),
    [
        ({"job": "varlogs", "service_name": "api"}, "api"),
        ({"job": "varlogs", "component": "db", "app": "shop"}, "shop"),
        ({"job": "varlogs", "container": "nginx"}, "nginx"),
        ({"job": "varlogs", "app_kubernetes_io_name": "cart"}, "cart"),
        ({"job": "varlogs", "workload": "batch"}, "batch"),
        ({"job": "varlogs"}, "varlogs"),
        ({"env": "prod"}, ""),
    ],
)
def test_loki_service_follows_lokis_discovery_order(labels: dict[str, str], service: str) -> None:
    push = {"streams": [{"stream": labels, "values": [["1717236000000000000", "x"]]}]}
    [row] = rows(parse_loki_push(json.dumps(push).encode(), "application/json", ctx()))
    assert row["ServiceName"] == service


def test_loki_malformed_content_type_is_a_415(client: TestClient, boot: Bootstrap) -> None:
    push = {"streams": [{"stream": {"job": "a"}, "values": [[str(time.time_ns()), "x"]]}]}
    headers = bearer(boot.ingest_key)
    for content_type, status in (
        ("application/json; charsetutf-8", 415),
        ("application/json; charset=utf-8", 204),
        ('application/json; charset="utf-8"', 204),
    ):
        answer = client.post(
            "/loki/api/v1/push",
            content=json.dumps(push),
            headers={**headers, "Content-Type": content_type},
        )
        assert answer.status_code == status, (content_type, answer.text)
        if status == 415:
            assert "charset=utf-8" in answer.json()["detail"]


# ---- OTLP: every field of the log data model ---------------------------------------------------


def _attribute(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def _otlp_example(time_ns: int) -> dict[str, Any]:
    """The shape of opentelemetry-proto's examples/logs.json, with one record of each kind of
    value it shows, an event (events.json) and the fields that example leaves at zero."""
    record = {
        "timeUnixNano": str(time_ns),
        "observedTimeUnixNano": str(time_ns + 123),
        "severityNumber": 10,
        "severityText": "Information",
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "flags": 1,
        "eventName": "browser.page_view",
        "droppedAttributesCount": 3,
        "body": {"stringValue": "Example log record"},
        "attributes": [
            _attribute("string.attribute", {"stringValue": "some string"}),
            _attribute("boolean.attribute", {"boolValue": True}),
            _attribute("int.attribute", {"intValue": "10"}),
            _attribute("double.attribute", {"doubleValue": 637.704}),
            _attribute("array.attribute", {"arrayValue": {"values": [{"stringValue": "many"}]}}),
            _attribute("map.attribute", {"kvlistValue": {"values": [_attribute("some.map.key", {"stringValue": "some value"})]}}),  # noqa: E501
            _attribute("empty.map", {"kvlistValue": {}}),
            _attribute("empty.string", {"stringValue": ""}),
        ],
    }  # fmt: skip
    scope = {
        "name": "my.library",
        "version": "1.0.0",
        "attributes": [_attribute("my.scope.attribute", {"stringValue": "some scope attribute"})],
        "droppedAttributesCount": 1,
    }
    resource = {
        "attributes": [_attribute("service.name", {"stringValue": "my.service"})],
        "droppedAttributesCount": 2,
    }
    return {
        "resourceLogs": [
            {
                "resource": resource,
                "schemaUrl": "https://opentelemetry.io/schemas/1.24.0",
                "scopeLogs": [
                    {
                        "scope": scope,
                        "schemaUrl": "https://example.com/scope/1.0",
                        "logRecords": [record],
                    }
                ],
            }
        ]
    }


def _one_event(client: TestClient, admin: dict[str, str], query: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:  # the WAL is searched, but the ack comes before the rows are readable
        answer = client.post("/v1/search", json={"query": query}, headers=admin)
        assert answer.status_code == 200, answer.text
        if answer.json()["events"] or time.monotonic() > deadline:
            [event] = answer.json()["events"]
            return dict(event)
        time.sleep(0.05)


def test_otlp_example_keeps_every_field_in_search_and_export(
    client: TestClient, boot: Bootstrap
) -> None:
    sent_ns = time.time_ns() - 10**9 - 987  # nanoseconds a microsecond clock would cut
    answer = client.post("/v1/logs", json=_otlp_example(sent_ns), headers=bearer(boot.ingest_key))
    assert answer.status_code == 200 and "partialSuccess" not in answer.json(), answer.text
    admin = bearer(boot.admin_token)
    event = _one_event(client, admin, '"Example log record"')
    assert event["timestamp"] == iso(sent_ns)  # to the nanosecond, as sent
    assert event["observed_timestamp"] == iso(sent_ns + 123)
    assert (event["level"], event["severity_number"]) == ("Information", 10)
    assert (event["trace_flags"], event["event_name"]) == (1, "browser.page_view")
    assert event["resource_schema_url"] == "https://opentelemetry.io/schemas/1.24.0"
    assert event["scope"] == {
        "name": "my.library",
        "version": "1.0.0",
        "attributes": {"my.scope.attribute": "some scope attribute", DROPPED_ATTRIBUTES: "1"},
        "schema_url": "https://example.com/scope/1.0",
    }
    assert event["resource"] == {"service.name": "my.service", DROPPED_ATTRIBUTES: "2"}
    assert event["attributes"] == {
        "string.attribute": "some string",
        "boolean.attribute": "true",
        "int.attribute": "10",
        "double.attribute": "637.704",
        "array.attribute": '["many"]',
        "map.attribute.some.map.key": "some value",
        "empty.map": "{}",
        "empty.string": "",
        DROPPED_ATTRIBUTES: "3",
    }
    # Searchable, and the level filter reads the text as sent without case.
    assert _one_event(client, admin, "level:information")["event_id"] == event["event_id"]
    named = _one_event(client, admin, "event_name:browser.page_view")
    assert named["event_id"] == event["event_id"]
    params = {"query": '"Example log record"'}
    exported = client.get("/v1/search/export", params=params, headers=admin)
    assert exported.status_code == 200, exported.text
    [line] = exported.text.splitlines()
    assert json.loads(line) == event


def test_otlp_observed_time_is_the_receive_time_only_when_absent() -> None:
    doc = _otlp_example(1_717_243_000 * 10**9)
    del doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["observedTimeUnixNano"]
    [row] = rows(parse_otlp_logs(json.dumps(doc).encode(), "application/json", ctx()))
    assert row["ObservedTimestamp"].value == NOW_NS
