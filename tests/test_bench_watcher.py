"""The alerts benchmark's watcher ends quietly when stopped before the gateway created the
evaluator's database (a gateway that failed to start, or a run cut short)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bench.alerts import Watcher


def test_a_watcher_stopped_before_the_database_exists_ends_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    watcher = Watcher(tmp_path / "alerts.sqlite3")
    watcher.start()
    watcher.stop()
    assert raised == [] and watcher.seen == {}
    assert not (tmp_path / "alerts.sqlite3").exists()  # read-only: it never creates it
