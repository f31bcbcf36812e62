"""Search through the API with the Parquet token index: the same answers, fewer files read.

The corpus of the search reference tests is ingested in many flushes (so many small batches),
with a needle planted in one of them. Every reference query must return exactly the same events
with the index as with skipping turned off; a needle search must skip most files and say so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from string import Template
from typing import Any

import pytest
from fastapi.testclient import TestClient

import astralog.query.plan
from astralog.api.app import create_app
from astralog.runtime import Runtime
from astralog.settings import load_settings
from tests.search_corpus import (
    WINDOW,
    CorpusEvent,
    generate,
    ingest,
    ndjson,
    rfc3339,
    seal_and_flush,
    search_all,
    stored_rows,
)
from tests.test_search_reference import QUERIES

pytestmark = pytest.mark.slow  # about a minute: 60 queries, each with and without the index

FLUSHES = 10
NEEDLE = "xq7zz"


@dataclass
class Served:
    client: TestClient
    headers: dict[str, str]
    rows: list[dict[str, Any]]
    files: int
    start_ms: int
    end_ms: int

    def search(self, query: str) -> tuple[list[str], list[dict[str, Any]]]:
        body = {"query": query, "start": self.start_ms, "end": self.end_ms}
        events, pages = search_all(self.client, self.headers, body, limit=1000)
        return [e["event_id"] for e in events], pages


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("skip") / "data",
        wal={"fsync": False, "segment_max_age_seconds": 3600},
        flush={"interval_seconds": 0.05},
        # The file set stays as flushed, so skip counts compare across searches.
        compaction={"enabled": False},
    )
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(settings, runtime)) as client:
        base_ns = int(time.time()) * 10**9
        events = generate(base_ns, ("default",), 1500)
        needle = CorpusEvent(
            "default",
            base_ns - 3 * 10**9,
            {
                "timestamp": rfc3339(base_ns - 3 * 10**9, 3),
                "message": f"found the {NEEDLE} needle",
                "user": {"id": "u-needle-77"},
            },
        )
        size = -(-len(events) // FLUSHES)
        for i in range(FLUSHES):
            chunk = events[i * size : (i + 1) * size] + ([needle] if i == FLUSHES // 2 else [])
            ingest(client, boot.ingest_key, ndjson(chunk))
            seal_and_flush(runtime)
        flushed, pending = stored_rows(runtime)
        assert not pending
        files = len(list((settings.data_dir / "bucket").rglob("*.parquet")))
        yield Served(
            client,
            {"Authorization": f"Bearer {boot.admin_token}"},
            flushed,
            files,
            (base_ns + WINDOW[0]) // 10**6,
            (base_ns + WINDOW[1]) // 10**6,
        )
    runtime.close()


def _context(rows: list[dict[str, Any]]) -> dict[str, str]:
    traces = sorted(r["TraceId"] for r in rows if r["TraceId"])
    return {
        "trace_upper": traces[len(traces) // 2].upper(),
        "trace_prefix": traces[len(traces) // 2][:3] + "*",
        "edge": rows[0]["SourceId"],
        "event_id": sorted(r["EventId"] for r in rows)[len(rows) // 3],
    }


@pytest.mark.parametrize(
    "query",
    [q for q, _ in QUERIES] + [NEEDLE, f'"the {NEEDLE}"', "user.id:u-needle-77", "zz9 OR timeout"],
)
def test_the_index_changes_no_answer(
    served: Served, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = Template(query).substitute(_context(served.rows))
    with_index, pages = served.search(text)
    monkeypatch.setattr(astralog.query.plan, "skippable", lambda node, items, path_of: (items, 0))
    without, unskipped = served.search(text)
    assert with_index == without
    assert unskipped[0]["files_skipped_by_token_index"] == 0
    assert pages[0]["files_skipped_by_token_index"] < served.files


@pytest.mark.parametrize("query", [NEEDLE, f'"found the {NEEDLE}"', "user.id:u-needle-77"])
def test_a_needle_search_skips_most_files(served: Served, query: str) -> None:
    _, every = served.search("")
    candidates = every[0]["files_read"] + every[0]["files_skipped"]  # in the time range
    assert candidates >= FLUSHES
    events, pages = served.search(query)
    assert len(events) == 1
    # All but the needle's batch, bar a bloom false positive or two.
    assert pages[0]["files_skipped_by_token_index"] >= candidates - 3
