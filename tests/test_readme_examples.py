"""Every search example in the README and in the UI's syntax help finds the README's example event.

The event is read from the README's ingest example (the ``printf`` line people paste), the
queries from the README's "Searching" section (the curl body and the examples table) and from the
UI's syntax help (``querybar.js``). Each is run through the search API on a real app; each must
find the event and leave out a decoy that matches none of them, so an example that matches
everything cannot pass either. When the docs change, this test reads the new text.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap
from tests.conftest import bearer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
QUERYBAR = (ROOT / "astralog" / "ui" / "querybar.js").read_text()
DECOY = {"level": "info", "service": "db", "message": "health check ok"}


def example_event() -> dict[str, Any]:
    found = re.search(r"printf '%s\\n' '(\{.*?\})'", README)
    assert found, "the README's NDJSON ingest example (printf '%s\\n' '{...}') is gone"
    event: dict[str, Any] = json.loads(found.group(1))
    return event


def _section(title: str) -> str:
    found = re.search(rf"^## {title}\n(.*?)(?=^## )", README, re.S | re.M)
    assert found, f"README has no '## {title}' section"
    return found.group(1)


def readme_queries() -> list[str]:
    section = _section("Searching")
    bodies = re.findall(r"-d '(\{.*?\})'", section)
    table = re.findall(r"^\| `(.+?)` \|", section, re.M)
    assert bodies and table, "the Searching section lost its curl example or its examples table"
    return [json.loads(body)["query"] for body in bodies] + table


def ui_queries() -> list[str]:
    block = re.search(r"const EXAMPLES = \[\n(.*?)\n\];", QUERYBAR, re.S)
    assert block, "querybar.js has no EXAMPLES list"
    literals = re.findall(r"^\s*\[(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'),", block.group(1), re.M)
    assert literals, "no examples parsed from querybar.js"
    return [json.loads(s) if s[0] == '"' else s[1:-1].replace("\\'", "'") for s in literals]


QUERIES = sorted(set(readme_queries() + ui_queries()))


@pytest.fixture
def ingested(client: TestClient, boot: Bootstrap) -> dict[str, str]:
    """The example event and the decoy, sent as the README sends it (gzip NDJSON)."""
    lines = "".join(json.dumps(e) + "\n" for e in (example_event(), DECOY)).encode()
    headers = bearer(boot.ingest_key) | {
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    response = client.post("/v1/ingest", content=gzip.compress(lines), headers=headers)
    assert response.status_code == 200, response.text
    return bearer(boot.admin_token)


def test_the_examples_were_found() -> None:
    assert len(QUERIES) >= 10
    assert any(">=" in q for q in readme_queries()) and any(">=" in q for q in ui_queries())


@pytest.mark.parametrize("query", QUERIES)
def test_each_example_finds_the_example_event(
    query: str, client: TestClient, ingested: dict[str, str]
) -> None:
    body = {"query": query, "start": "now-1h", "limit": 50}
    response = client.post("/v1/search", json=body, headers=ingested)
    assert response.status_code == 200, response.text
    bodies = [e["body"] for e in response.json()["events"]]
    assert bodies == [example_event()["message"]], f"{query!r} found {bodies}"
