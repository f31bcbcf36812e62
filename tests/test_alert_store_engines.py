"""The evaluator's working state on both engines: the SQLite file of one node, and the control
plane's PostgreSQL that several nodes share, where the next leader goes on from the state the
last one committed (tests/postgres_server.py runs a real server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from astralog.alerts.state import InstanceState
from astralog.alerts.store import AlertStore, Evaluation

pytest_plugins = ["tests.postgres_server"]

FIRING = InstanceState("firing", hits=2, last_hit_ns=5, notified="firing", changes=(5,), seq=1)


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    return tmp_path / "alerts.sqlite3", url


@pytest.fixture
def store(where: tuple[Path, str]) -> Iterator[AlertStore]:
    opened = AlertStore(*where)
    yield opened
    opened.close()


def evaluation(
    alert_id: str, due: int, *updates: tuple[str, InstanceState, str | None]
) -> Evaluation:
    return Evaluation(
        alert_id, due, due + 60, 1_000,
        [(key, {"service": key}, state, 3, event) for key, state, event in updates],
        scan="scan-1",
    )  # fmt: skip


def test_the_next_leader_goes_on_from_the_committed_state(
    store: AlertStore, where: tuple[Path, str]
) -> None:
    store.commit(
        [evaluation("alr_a", 100, ("api", FIRING, "firing"), ("db", InstanceState(), None)),
         evaluation("alr_b", 100)],
        now=110, prune=lambda state: False, done=lambda: 111,
    )  # fmt: skip
    again = AlertStore(*where)  # another node, or this one after a restart
    try:
        instances = again.instances("alr_a")
        assert instances["api"].state == FIRING and instances["api"].labels == {"service": "api"}
        assert again.runs()["alr_a"].next_due_ns == 160
        summaries = again.summaries(["alr_a", "alr_b", "alr_a", "alr_none"])
        assert summaries["alr_a"].counts == {"firing": 1, "normal": 1}
        assert summaries["alr_a"].worst == "firing" and summaries["alr_a"].last_run_ns == 110
        assert summaries["alr_b"].counts == {} and summaries["alr_b"].next_due_ns == 160
        assert summaries["alr_none"].next_due_ns is None
        assert [h["event"] for h in again.history("alr_a")] == ["firing"]
    finally:
        again.close()


def test_errors_count_runs_of_failures_and_forgetting_drops_everything(
    store: AlertStore,
) -> None:
    store.fail("alr_a", 200, "the search timed out", now=150)
    store.fail("alr_a", 260, "the search timed out again", now=210)  # the same run of failures
    run = store.run("alr_a")
    assert run is not None and run.errors == 1 and run.last_error == "the search timed out again"
    store.commit([evaluation("alr_a", 260, ("api", FIRING, "firing"))], now=270,
                 prune=lambda state: False)  # fmt: skip
    store.fail("alr_a", 330, "down again", now=330)  # a new run of failures
    run = store.run("alr_a")
    assert run is not None and run.errors == 2
    assert [h["event"] for h in store.history("alr_a")] == ["error", "firing", "error", "error"]
    store.forget_alerts(["alr_a"])
    assert store.run("alr_a") is None and store.instances("alr_a") == {}
    assert store.history("alr_a") == []
