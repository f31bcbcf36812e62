"""Log patterns (``GET /v1/search/patterns``): templates with counts, first/last seen, sparklines
and a filter that selects their events, under the search's rules (org, readable sources,
deletion vectors), bounded in cost, on the embedded bucket and on ClickHouse (chDB).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from astralog.query import patterns as pt
from astralog.query.language import parse
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer
from tests.fuzz_strategies import TIMES, budget, in_url, queries
from tests.lifecycle_helpers import clickhouse as clickhouse
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import settings as settings
from tests.rbac_helpers import Member, add_member
from tests.search_corpus import add_source
from tests.test_byob import committed
from tests.test_erasure import approve, ask, erase

PROBLEM = "application/problem+json"
SHAPES = {
    "login": ("user {u} logged in from 10.0.{a}.{b}", "user <*> logged in from <IP>"),
    "disk": ("disk /dev/sd{a} is {b}% full", "disk <*> is <NUM>% full"),
    "odd": ('quote " back\\slash (paren) OR *star* #{a}', None),
}


def events(run: str, counts: dict[str, int]) -> list[dict[str, Any]]:
    """``counts[shape]`` events of each shape, a second apart, tagged ``run:<run>``."""
    base = datetime.now(UTC) - timedelta(minutes=10)
    out = []
    for shape, n in counts.items():
        for i in range(n):
            text = SHAPES[shape][0].format(u=f"u{i % 7}", a=i % 5, b=i)
            at = base + timedelta(seconds=len(out))
            out.append({"timestamp": at.isoformat(), "message": text, "level": "info",
                        "run": run, "shape": shape})  # fmt: skip
    return out


def send(client: TestClient, key: str, lines: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(line) for line in lines)
    response = client.post("/v1/ingest", content=body, headers=bearer(key))
    assert response.status_code == 200 and response.json()["accepted"] == len(lines), response.text


def get(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    return client.get("/v1/search/patterns", params={"start": "now-1h", **params}, headers=headers)


def patterns(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = get(client, headers, **params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def shapes_found(client: TestClient, headers: dict[str, str], query: str) -> Counter[str]:
    body = {"query": query, "start": "now-1h", "limit": 1000}
    response = client.post("/v1/search", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return Counter(e["attributes"]["shape"] for e in response.json()["events"])


def check_answer(client: TestClient, headers: dict[str, str], run: str) -> None:
    """The three shapes come back as three templates whose filters select exactly them."""
    counts = {"login": 30, "disk": 12, "odd": 5}
    answer = patterns(client, headers, query=f"run:{run}")
    assert answer["estimated"] is False and answer["events"] == 47 == answer["sampled"]
    assert answer["partial"] is False and answer["templates"] == 3
    by_count = {p["count"]: p for p in answer["patterns"]}
    assert sorted(by_count) == sorted(counts.values())
    for shape, n in counts.items():
        found = by_count[n]
        if SHAPES[shape][1]:
            assert found["template"] == SHAPES[shape][1]
        assert sum(found["sparkline"]) == n
        assert found["first_seen"] <= found["last_seen"]
        assert found["query"] == f"(run:{run}) {found['filter']}"
        assert shapes_found(client, headers, found["query"]) == Counter({shape: n})


# ---- the embedded bucket ---------------------------------------------------------------------


def test_templates_counts_and_filters(client: TestClient, boot: Bootstrap) -> None:
    admin, run = bearer(boot.admin_token), "p1"
    send(client, boot.ingest_key, events(run, {"login": 30, "disk": 12, "odd": 5}))
    check_answer(client, admin, run)
    disk = patterns(client, admin, query=f"run:{run} disk")
    assert [p["template"] for p in disk["patterns"]] == ["disk <*> is <NUM>% full"]
    first, last = (
        datetime.fromisoformat(disk["patterns"][0][k]) for k in ("first_seen", "last_seen")
    )
    assert (last - first).total_seconds() == 11  # the 12 disk events are a second apart
    reads = runtime_records(client, boot)
    assert reads[-1].action == "patterns" and reads[-1].events == 12


def runtime_records(client: TestClient, boot: Bootstrap) -> list[Any]:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    records = runtime.control.store.records(org_id=str(boot.org["id"]))
    return [r.event() for r in records if r.type == "LogsRead"]


def test_a_sample_is_marked_estimated_and_scaled(
    client: TestClient, boot: Bootstrap, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pt, "SAMPLE_ROWS", 40)
    send(client, boot.ingest_key, events("p2", {"login": 150, "disk": 50}))
    answer = patterns(client, bearer(boot.admin_token), query="run:p2")
    assert answer["estimated"] is True and answer["sampled"] == 40 and answer["events"] == 200
    assert sum(p["count"] for p in answer["patterns"]) + answer["other"] == pytest.approx(200, 2)
    assert "estimated from a uniform sample of 40 of the 200" in answer["notes"][0]


def test_only_readable_sources_and_own_org(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    org = str(boot.org["id"])
    other_source, other_key = add_source(client, bearer(boot.admin_token), "other")
    send(client, boot.ingest_key, events("p3", {"login": 5}))
    send(client, other_key, events("p3", {"disk": 4}))
    narrow = add_member(runtime, org, "viewer", [str(boot.source["id"])])
    answer = patterns(client, narrow.headers, query="run:p3")
    assert [p["template"] for p in answer["patterns"]] == ["user <*> logged in from <IP>"]
    refused = get(client, narrow.headers, sources=other_source)
    assert refused.status_code == 400 and "unknown sources" in refused.json()["detail"]
    op = bearer(boot.operator_token)
    made = client.post("/v1/orgs", json={"name": "elsewhere", "plan": "pro"}, headers=op).json()
    reader = {"name": "r", "scopes": ["logs:read"]}
    token = client.post(f"/v1/orgs/{made['id']}/tokens", json=reader, headers=op).json()["token"]
    assert patterns(client, bearer(token), query="run:p3")["patterns"] == []


def test_erased_events_are_not_grouped(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member
) -> None:
    send(client, boot.ingest_key, events("p4", {"login": 3, "disk": 2}))
    committed(runtime, str(boot.org["id"]), 5)
    admin = add_member(runtime, str(boot.org["id"]), "admin")
    approve(client, owner, ask(client, admin, query="run:p4 disk")["id"])
    assert erase(client, runtime) >= 1
    answer = patterns(client, bearer(boot.admin_token), query="run:p4")
    assert [p["template"] for p in answer["patterns"]] == ["user <*> logged in from <IP>"]
    assert answer["events"] == 3


# ---- hostile input and bounded cost ----------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"query": "level:("}, 400, "expected a term"),
        ({"query": "(a OR b"}, 400, "missing ')'"),
        ({"query": "x" * 5000}, 422, "4096"),
        ({"start": "yesterday-ish"}, 400, "start"),
        ({"start": "now", "end": "now-1h"}, 400, "empty"),
        ({"end": "now-2h"}, 400, "empty"),
        ({"limit": "0"}, 422, "limit"),
        ({"limit": "100000"}, 422, "limit"),
        ({"sources": "src_nope,src_also"}, 400, "unknown sources"),
        ({"start": "1" * 100}, 422, "64"),
    ],
)
def test_bad_input_is_a_problem_document(
    client: TestClient, boot: Bootstrap, params: dict[str, str], status: int, says: str
) -> None:
    response = get(client, bearer(boot.admin_token), **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert says in response.text


def test_undecodable_query_text_is_not_a_crash(client: TestClient, boot: Bootstrap) -> None:
    url = "/v1/search/patterns?start=now-1h&query=%ED%A0%80%FF%00"
    response = client.get(url, headers=bearer(boot.admin_token))
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.headers["content-type"].startswith(PROBLEM)


def test_needs_logs_read(client: TestClient, boot: Bootstrap) -> None:
    assert get(client, {}).status_code == 401
    assert get(client, bearer(boot.ingest_key)).status_code == 403


def test_huge_and_hostile_bodies_cost_a_bounded_amount(client: TestClient, boot: Bootstrap) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    lines = [{"timestamp": at.isoformat(), "run": "p5", "shape": "big",
              "message": f"start {i} " + "tok " * 50_000 + '\\ " ( ) : * ?'}
             for i in range(4)]  # fmt: skip
    lines += [{"timestamp": at.isoformat(), "run": "p5", "shape": "nul",
               "message": f"nul\u0000byte \u202e rtl {i}\tTabbed"} for i in range(3)]  # fmt: skip
    send(client, boot.ingest_key, lines)
    started = time.monotonic()
    answer = patterns(client, bearer(boot.admin_token), query="run:p5")
    assert time.monotonic() - started < 10
    for found in answer["patterns"]:
        assert len(found["example"]) <= pt.EXAMPLE_CHARS
        assert len(found["filter"]) <= pt.FILTER_CHARS
        parse(found["query"])  # always a valid query
        shape = "big" if found["template"].startswith("start") else "nul"
        n = 4 if shape == "big" else 3
        assert found["count"] == n
        assert shapes_found(client, bearer(boot.admin_token), found["query"]) == Counter({shape: n})


def test_grouping_stops_at_its_deadline() -> None:
    rows = [(1_000 * i, f"message {i}") for i in range(1000)]
    sample = pt.Sample(rows, 1000, 1000)
    answer = pt.patterns(sample, "", 0, 10**12, 10, seconds=0.0)
    assert answer["mined"] == 0 and answer["patterns"] == []
    assert "grouping stopped after 0 of 1,000" in answer["notes"][0]


@pytest.mark.parametrize(
    ("template", "loose", "expected"),
    [
        ("user <*> logged in", False, r"body:(user logged\ in)"),
        ("<*> <NUM>", False, "body:*"),
        ('a"b OR (c) *', True, r"body:(a\"b \OR \(c\))"),
        ("x=<NUM>ms done", False, r"body:(x\= *ms\ done)"),
        ("took <NUM>ms", False, r"body:(took *ms)"),
    ],
)
def test_filter_text(template: str, loose: bool, expected: str) -> None:
    assert pt.filter_for(template, loose=loose) == expected
    parse(expected)


def test_a_long_template_is_cut_to_a_prefix_that_fits() -> None:
    clause = pt.filter_for(" ".join(f"word{i}" for i in range(2000)), loose=False, budget=100)
    assert len(clause) <= 100 and clause.startswith(r"body:word0\ word1\ ")
    assert not clause.endswith("\\") and not clause.endswith(r"\ ")
    assert pt.combined("q" * 4090, clause) is None


# ---- ClickHouse destination (chDB) -----------------------------------------------------------


def test_clickhouse_destination_gets_the_same_view(
    client: TestClient,
    runtime: Runtime,
    boot: Bootstrap,
    clickhouse: tuple[Client, str],
) -> None:
    engine, database = clickhouse
    send(client, boot.ingest_key, events("p6", {"login": 30, "disk": 12, "odd": 5}))
    batches = committed(runtime, str(boot.org["id"]), 47)
    assert {b.destination_id for b in batches} != {"local"}
    stored = engine.query(f"SELECT count() FROM `{database}`.otel_logs").result_rows[0][0]
    assert stored == 47
    check_answer(client, bearer(boot.admin_token), "p6")


@pytest.mark.fuzz
def test_fuzzed_parameters_never_crash(client: TestClient, boot: Bootstrap) -> None:
    send(client, boot.ingest_key, events("p7", {"login": 3, "odd": 2}))
    admin = bearer(boot.admin_token)
    keys = st.sampled_from(["query", "start", "end", "sources", "limit"])
    values = st.one_of(queries(), TIMES.map(str), st.integers(-5, 500).map(str))

    @budget(40)
    @given(st.dictionaries(keys, values, max_size=5))
    def run(params: dict[str, str]) -> None:
        params = {k: in_url(v) for k, v in params.items()}
        response = client.get("/v1/search/patterns", params=params, headers=admin)
        assert response.status_code < 500, (params, response.text[:300])
        if response.status_code == 200:
            for found in response.json()["patterns"]:
                parse(found["filter"])
        else:
            assert response.headers["content-type"].startswith(PROBLEM)

    run()
