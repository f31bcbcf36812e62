"""The connector contract as tests, run once per implementation.

Subclass :class:`ConnectorContract` in a ``test_connector_<kind>.py`` module (named ``Test...``),
provide the ``connector`` fixture and :meth:`ConnectorContract.stored_rows`; every test here then
runs against that connector. Also holds :func:`make_events`, the canonical-schema table builder
the ingest tests share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pyarrow as pa
import pytest

from astralog.connectors.base import BatchKey, Connector, ConnectorError
from astralog.connectors.layout import object_key
from astralog.schema import log_schema

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
H = timedelta(hours=1)
_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def make_events(
    n: int,
    org_id: str = "acme",
    source_id: str = "web",
    start: datetime = T0,
    step: timedelta = timedelta(seconds=1),
    *,
    tag: str = "e",
    reverse: bool = False,
) -> pa.Table:
    """``n`` events of the canonical schema; EventIds are ``<tag>-<i>`` so tests can count them."""
    schema = log_schema()
    start_ns = int(start.timestamp()) * 10**9
    step_ns = int(step.total_seconds() * 10**9)
    stamps = [start_ns + i * step_ns for i in range(n)]
    if reverse:
        stamps.reverse()
    columns: dict[str, Any] = {}
    for f in schema:
        if pa.types.is_timestamp(f.type):
            columns[f.name] = pa.array(stamps, pa.int64()).cast(f.type)
        elif pa.types.is_map(f.type):
            columns[f.name] = pa.array([[("k", "v")]] * n, f.type)
        elif pa.types.is_integer(f.type):
            columns[f.name] = pa.array([9] * n, f.type)
        else:
            columns[f.name] = pa.array([""] * n, f.type)
    columns["EventId"] = pa.array([f"{tag}-{i}" for i in range(n)])
    columns["OrgId"] = pa.array([org_id] * n)
    columns["SourceId"] = pa.array([source_id] * n)
    columns["Body"] = pa.array([f"message {i} from {source_id}" for i in range(n)])
    return pa.table(columns, schema=schema)


def batch_key(org: str, source: str, hour: datetime, batch: str = "b1") -> BatchKey:
    return BatchKey(org_id=org, source_id=source, hour=hour, batch_id=batch)


class ConnectorContract:
    """What every connector must do. Not collected itself: its name does not start with Test."""

    @pytest.fixture
    def connector(self) -> Connector:
        raise NotImplementedError("a contract subclass provides the connector under test")

    def stored_rows(self, connector: Connector, key: str) -> int:
        """How many rows the object at ``key`` holds, read back without the connector."""
        raise NotImplementedError

    def write(self, connector: Connector, key: BatchKey, rows: int = 5) -> str:
        table = make_events(rows, key.org_id, key.source_id, key.hour)
        return run(connector.write_batch(key, table)).key

    def test_write_reports_what_was_stored(self, connector: Connector) -> None:
        key = batch_key("acme", "web", T0)
        written = run(connector.write_batch(key, make_events(7, start=T0)))
        assert written.key.endswith(object_key(key))
        assert written.rows == 7
        assert written.bytes > 0
        assert written.uri
        assert self.stored_rows(connector, written.key) == 7

    def test_same_batch_twice_is_stored_once(self, connector: Connector) -> None:
        key = batch_key("acme", "web", T0)
        first = self.write(connector, key, rows=4)
        second = self.write(connector, key, rows=4)
        assert first == second
        assert run(connector.list_objects("acme", None, T0, T0 + H)) == [first]
        assert self.stored_rows(connector, first) == 4

    def test_listing_prunes_by_org_source_and_time(self, connector: Connector) -> None:
        web = [self.write(connector, batch_key("acme", "web", T0 + i * H)) for i in range(3)]
        api = self.write(connector, batch_key("acme", "api", T0 + H))
        other_org = self.write(connector, batch_key("globex", "web", T0 + H))

        assert run(connector.list_objects("acme", "web", T0, T0 + 3 * H)) == sorted(web)
        # [T0+1h30, T0+2h) touches only the T0+1h partition
        middle = run(connector.list_objects("acme", None, T0 + 1.5 * H, T0 + 2 * H))
        assert middle == sorted([web[1], api])
        assert run(connector.list_objects("globex", None, T0, T0 + 3 * H)) == [other_org]
        assert run(connector.list_objects("nobody", None, T0, T0 + 3 * H)) == []

    def test_delete_expired_removes_only_whole_old_hours(self, connector: Connector) -> None:
        web = [self.write(connector, batch_key("acme", "web", T0 + i * H)) for i in range(3)]
        api = self.write(connector, batch_key("acme", "api", T0))
        other_org = self.write(connector, batch_key("globex", "web", T0))

        # T0+1h30 is inside the second hour: that partition is not entirely older, so it stays
        deleted = run(connector.delete_expired("acme", None, T0 + 1.5 * H))
        assert deleted == sorted([web[0], api])
        remaining = run(connector.list_objects("acme", None, T0, T0 + 3 * H))
        assert remaining == sorted(web[1:])

        assert run(connector.delete_expired("acme", "web", T0 + 3 * H)) == sorted(web[1:])
        assert run(connector.list_objects("acme", None, T0, T0 + 3 * H)) == []
        assert run(connector.list_objects("globex", None, T0, T0 + 3 * H)) == [other_org]
        assert run(connector.delete_expired("acme", None, T0 + 3 * H)) == []

    def test_delete_expired_keeps_the_hours_a_hold_keeps(self, connector: Connector) -> None:
        hours = (-30, -11, -10, -9, 0, 2, 3, 5, 6)  # over three days: whole days can go at once
        keys = {
            i: self.write(connector, batch_key("acme", "web", T0 + i * H, f"b{i}")) for i in hours
        }
        # the first span crosses midnight; the second touches only part of the hour T0+2h
        keep = [(T0 - 11 * H, T0 - 9 * H), (T0 + 2.5 * H, T0 + 2.75 * H)]
        deleted = run(connector.delete_expired("acme", None, T0 + 6 * H, keep))
        assert deleted == sorted(keys[i] for i in (-30, -9, 0, 3, 5))
        remaining = run(connector.list_objects("acme", None, T0 - 48 * H, T0 + 48 * H))
        assert remaining == sorted(keys[i] for i in (-11, -10, 2, 6))
        rows = {i: self.stored_rows(connector, keys[i]) for i in (-11, -10, 2, 6)}
        assert rows == dict.fromkeys(rows, 5), rows  # rows kept, not only keys
        assert run(connector.delete_expired("acme", "web", T0 + 6 * H, keep)) == []
        assert run(connector.delete_expired("acme", "web", T0 + 7 * H)) == sorted(
            keys[i] for i in (-11, -10, 2, 6)
        )

    def test_probe_passes_every_step(self, connector: Connector) -> None:
        checks = run(connector.probe())
        assert checks, "probe must report its steps"
        assert all(c.ok for c in checks), checks

    def test_retryable_classification(self, connector: Connector) -> None:
        assert connector.is_retryable(ConnectorError("down", retryable=True))
        assert not connector.is_retryable(ConnectorError("refused", retryable=False))
        assert not connector.is_retryable(TypeError("a bug is not retryable"))

    def test_checkpoints_are_kept_per_org_and_listed_in_order(self, connector: Connector) -> None:
        documents = {seq: f'{{"seq":{seq}}}'.encode() for seq in (3, 12, 7)}
        for seq, document in documents.items():
            run(connector.put_checkpoint("acme", seq, document))
        run(connector.put_checkpoint("acme", 12, documents[12]))  # again: stored once
        run(connector.put_checkpoint("globex", 1, b'{"seq":1}'))
        listed = run(connector.list_checkpoints("acme"))
        assert [doc for _, doc in listed] == [documents[s] for s in (3, 7, 12)]
        assert all(where for where, _ in listed)
        assert [doc for _, doc in run(connector.list_checkpoints("globex"))] == [b'{"seq":1}']
        assert run(connector.list_checkpoints("nobody")) == []

    def test_checkpoints_are_not_batches(self, connector: Connector) -> None:
        batch = self.write(connector, batch_key("acme", "web", T0))
        run(connector.put_checkpoint("acme", 1, b'{"seq":1}'))
        assert run(connector.list_objects("acme", None, T0 - 48 * H, T0 + 48 * H)) == [batch]
        assert run(connector.delete_expired("acme", None, T0 + 48 * H)) == [batch]
        assert len(run(connector.list_checkpoints("acme"))) == 1  # retention never purges them

    def test_purge_receipts_are_kept_per_org_and_never_purged(self, connector: Connector) -> None:
        batch = self.write(connector, batch_key("acme", "web", T0))
        for name in ("purge-2", "purge-1", "purge-2"):  # again: stored once
            run(connector.put_receipt("acme", name, f'{{"name":"{name}"}}'.encode()))
        run(connector.put_receipt("globex", "purge-1", b"{}"))
        assert run(connector.delete_expired("acme", None, T0 + 48 * H)) == [batch]
        listed = run(connector.list_receipts("acme"))
        assert [doc for _, doc in listed] == [b'{"name":"purge-1"}', b'{"name":"purge-2"}']
        assert run(connector.list_receipts("nobody")) == []
        assert run(connector.list_checkpoints("acme")) == []  # receipts are not checkpoints

    def test_the_orgs_with_checkpoints_are_listed_without_a_database(
        self, connector: Connector
    ) -> None:
        """A verifier finds every org's copies even when the database naming the orgs is gone."""
        self.write(connector, batch_key("batchonly", "web", T0))
        run(connector.put_checkpoint("acme", 2, b'{"seq":2}'))
        run(connector.put_checkpoint("globex", 1, b'{"seq":1}'))
        orgs = run(connector.list_checkpoint_orgs())
        assert {"acme", "globex"} <= set(orgs) and "batchonly" not in orgs
        assert orgs == sorted(set(orgs))
