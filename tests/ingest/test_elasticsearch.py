"""The Elasticsearch ``_bulk`` format and its per-item results."""

from __future__ import annotations

import pytest

from astralog.errors import BadRequest
from astralog.ingest.formats import bulk_response, parse_es_bulk
from tests.ingest.parsing import attrs, ctx, ndjson, rows


def test_es_bulk_actions_and_per_item_results() -> None:
    body = ndjson(
        {"index": {"_index": "logs-a", "_id": "given-1"}},
        {"message": "first", "level": "info"},
        {"create": {}},
        {"message": "second", "@timestamp": "2024-06-01T10:30:15Z"},
        {"delete": {"_index": "logs-a", "_id": "x"}},
        {"update": {"_id": "y"}},
        {"doc": {"message": "changed"}},
        {"index": {}},
        b"{not json",
        {"index": {"_index": "logs-b"}},
        {"message": "fourth", "time": "garbage"},
        {"create": {"_index": "logs-c"}},
        {"message": "fifth"},
    )
    parsed, items = parse_es_bulk(body + b"\n", "default-idx", ctx())
    assert [r["Body"] for r in rows(parsed)] == ["first", "second", "fifth"]
    assert parsed.received == 7
    assert parsed.accepted_indexes == [0, 1, 6]
    assert [(r.index, r.line) for r in parsed.rejects] == [(2, 5), (3, 6), (4, 9), (5, 11)]
    assert "delete action is not supported" in parsed.rejects[0].reason
    assert parsed.rejects[2].reason.startswith("line 9: invalid JSON")
    assert [(i.action, i.status) for i in items] == [
        ("index", 201),
        ("create", 201),
        ("delete", 400),
        ("update", 400),
        ("index", 400),
        ("index", 400),
        ("create", 201),
    ]
    ids = parsed.table.column("EventId").to_pylist()
    answered = [i.to_dict()[i.action]["_id"] for i in items if i.status == 201]
    assert answered == ["given-1", ids[1], ids[2]]
    assert [i.index for i in items] == [
        "logs-a", "default-idx", "logs-a", "default-idx", "default-idx", "logs-b", "logs-c",
    ]  # fmt: skip
    assert [attrs(r, "ResourceAttributes")["elasticsearch.index"] for r in rows(parsed)] == [
        "logs-a",
        "default-idx",
        "logs-c",
    ]
    response = bulk_response(items, 3)
    assert response["errors"] is True and response["took"] == 3
    assert response["items"][0] == {
        "index": {
            "_index": "logs-a",
            "_id": "given-1",
            "status": 201,
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": 0,
            "_primary_term": 1,
        }
    }
    assert response["items"][4]["index"]["error"]["type"] == "document_parsing_exception"
    assert response["items"][5]["index"]["error"]["type"] == "illegal_argument_exception"


def test_es_bulk_all_good_has_no_errors() -> None:
    body = ndjson(*[x for i in range(50) for x in ({"index": {}}, {"message": f"m{i}"})])
    parsed, items = parse_es_bulk(body, None, ctx())
    assert parsed.table.num_rows == 50 and not parsed.rejects
    assert bulk_response(items, 1)["errors"] is False
    assert parsed.accepted_indexes == list(range(50))


def test_es_bulk_first_document_broken_is_a_per_item_error() -> None:
    body = b'{"index": {}}\n{broken\n{"index": {}}\n{"message": "ok"}\n'
    parsed, items = parse_es_bulk(body, "i", ctx())
    assert [i.status for i in items] == [400, 201]
    assert [(r.index, r.line, r.kind) for r in parsed.rejects] == [(0, 2, "invalid_json")]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"index": {}\n{"message": "a"}\n', "line 1: malformed action/metadata line"),
        (b'{"upsert": {}}\n{"message": "a"}\n', "found 'upsert'"),
        (b'{"index": {}, "create": {}}\n{}\n', "single action"),
        (b'{"index": {}}\n{"message": "a"}\n{"index": {}}\n', "line 3: the index action has no"),
    ],
)
def test_es_bulk_malformed_action_lines(body: bytes, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        parse_es_bulk(body, None, ctx())
