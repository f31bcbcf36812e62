"""With merging turned off, the compaction loop still deletes what earlier merges left behind:
an object written by a merge that never swapped (the process died) does not stay forever."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.runtime import Runtime
from tests.test_compaction import Feed, compact, local_objects
from tests.test_compaction import feed as feed
from tests.test_compaction import settings as settings

__all__ = ["feed", "settings"]  # fixtures


@pytest.mark.parametrize("settings", [{"enabled": False, "interval_seconds": 0.2}], indirect=True)
def test_cleanup_runs_while_merging_is_disabled(
    client: TestClient, runtime: Runtime, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runtime.settings.compaction.enabled is False
    for _ in range(2):
        feed.post([2])
    before = feed.searched()

    def dies(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("the process dies after writing, before the swap")

    with monkeypatch.context() as patched:
        patched.setattr(type(runtime.data.catalog), "compacted", dies)
        assert compact(client, runtime) == 0  # a merge an operator ran before turning it off
    deadline = time.monotonic() + 20
    while len(local_objects(runtime)) != 2:  # the half-written merge's object goes
        assert time.monotonic() < deadline, "the unfinished merge's object stayed for 20 s"
        time.sleep(0.1)
    assert len(feed.catalog()) == 2  # nothing merged: merging is off
    assert feed.searched() == before
