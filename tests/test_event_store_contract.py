"""The event-store contract, run against every backend: SQLite (the embedded default) and
PostgreSQL (a real server, tests/postgres_server.py).

:class:`EventStoreContract` holds the tests; a subclass per backend provides the ``store`` fixture
and the few things that differ by dialect (how a projection row is written, how a record is
edited behind the store's back, how the log is verified). The PostgreSQL-only properties (the
writer role, ``events rebuild``) are below the contract.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from astralog.catalog import BatchCommitted
from astralog.cli import main
from astralog.controlplane import audit_verify, pgstore, projections
from astralog.controlplane import events as ev
from astralog.controlplane.audit_verify import Report
from astralog.controlplane.checkpoints import Signer
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import (
    GENESIS,
    Actor,
    EventStore,
    Recorded,
    SqliteEventStore,
    record_hash,
)
from astralog.controlplane.store import EventLog as Store
from astralog.errors import Conflict
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import load_settings
from tests.postgres_server import PostgresServer

pytest_plugins = ["tests.postgres_server"]

ME = Actor("admin@example.com", "test")
SIGNING_KEY = Ed25519PrivateKey.generate()
KEY = SIGNING_KEY.public_key()
Exploding = "boom"  # a source of this name makes the test projector fail


def org(name: str) -> ev.OrgCreated:
    return ev.OrgCreated(name, name.title(), "free")


def source(org_id: str, name: str) -> ev.SourceCreated:
    return ev.SourceCreated(f"{org_id}-{name}", org_id, name)


def append(store: Store, event: ev.Event, expected: int = 0) -> Recorded:
    with store.transaction():
        return store.append(event, ME, expected)


def chain_of(records: list[Recorded]) -> str:
    """The head hash recomputed from the records alone; fails on the first broken link."""
    prev = GENESIS
    for number, record in enumerate(records, start=1):
        assert record.seq == number
        assert record.prev_hash == prev
        assert record.hash == record_hash(prev, record.hashed_fields())
        prev = record.hash
    return prev


class EventStoreContract:
    refused: ClassVar[tuple[type[Exception], ...]]
    """What the database raises for an UPDATE or DELETE on the log."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError

    def open_another(self, store: Store) -> Store:
        """A second store on the same database, with its own connection (another node)."""
        raise NotImplementedError

    def projected(self, store: Store) -> list[tuple[int, str]]:
        raise NotImplementedError

    def execute(self, store: Store, statement: str) -> None:
        raise NotImplementedError

    def tamper(self, store: Store, seq: int) -> None:
        """Edit record ``seq``'s actor the way an attacker with the database's owner would."""
        raise NotImplementedError

    def verify(self, store: Store) -> Report:
        raise NotImplementedError

    def checkpoint(self, store: Store, signer: Signer) -> tuple[int, str] | None:
        assert isinstance(store, EventStore)
        return signer.checkpoint(store)

    # ---- the hash chain and versions ------------------------------------------------------

    def test_appends_are_numbered_versioned_and_chained(self, store: Store) -> None:
        append(store, org("acme"))
        append(store, source("acme", "web"))
        append(store, ev.OrgPlanChanged("acme", "pro"), expected=1)
        records = store.records()
        assert [(r.aggregate_id, r.version) for r in records] == [
            ("acme", 1), ("acme-web", 1), ("acme", 2)
        ]  # fmt: skip
        assert store.head() == (3, chain_of(records))
        assert store.version("acme") == 2 and store.version("nobody") == 0

    def test_a_stale_expected_version_conflicts_and_leaves_no_trace(self, store: Store) -> None:
        append(store, org("acme"))
        head = store.head()
        with pytest.raises(Conflict, match="changed concurrently"):
            append(store, ev.OrgPlanChanged("acme", "pro"), expected=0)
        with pytest.raises(Conflict):
            append(store, org("acme"))  # a new aggregate that already exists
        assert store.head() == head and store.version("acme") == 1

    def test_each_org_has_its_own_chain(self, store: Store) -> None:
        append(store, org("acme"))
        append(store, org("globex"))
        append(store, source("acme", "web"))
        links = store.org_records("acme")
        assert [(r.seq, link.org_seq) for r, link in links] == [(1, 1), (3, 2)]
        prev = GENESIS
        for record, link in links:
            assert link.org_prev_hash == prev
            assert link.org_hash == record_hash(prev, record.org_hashed_fields(link.org_seq))
            prev = link.org_hash
        assert store.org_records("acme", after=1)[0][0].seq == 3

    def test_records_are_filtered_by_position_org_and_type(self, store: Store) -> None:
        for name in ("acme", "globex"):
            append(store, org(name))
            append(store, source(name, "web"))
        assert [r.seq for r in store.records(after=2)] == [3, 4]
        assert [r.seq for r in store.records(org_id="globex")] == [3, 4]
        assert [r.seq for r in store.records(types=["SourceCreated"], limit=1)] == [2]

    # ---- projections in the append's transaction ------------------------------------------

    def test_the_projector_writes_in_the_same_transaction(self, store: Store) -> None:
        append(store, org("acme"))
        append(store, source("acme", "web"))
        with pytest.raises(RuntimeError, match="projection failed"):
            append(store, source("acme", Exploding))
        assert self.projected(store) == [(1, "OrgCreated"), (2, "SourceCreated")]
        assert store.head()[0] == 2  # the record went with its projection

    # ---- append-only in the database ------------------------------------------------------

    @pytest.mark.parametrize(
        "statement",
        ["UPDATE events SET actor = 'mallory'", "DELETE FROM events", "DELETE FROM org_chain"],
    )
    def test_the_database_refuses_to_edit_the_log(self, store: Store, statement: str) -> None:
        append(store, org("acme"))
        with pytest.raises(self.refused, match="append-only"):
            self.execute(store, statement)
        assert store.records()[0].actor == ME.principal

    # ---- audit verify ---------------------------------------------------------------------

    def test_verify_finds_an_untouched_log_whole(self, store: Store) -> None:
        append(store, org("acme"))
        append(store, source("acme", "web"))
        report = self.verify(store)
        assert report.problems == [] and report.verdict == "unproven"  # nothing signed yet
        assert (report.records, report.head_seq) == (2, 2)
        assert report.orgs["acme"].records == 2

    def test_a_signed_log_verifies_intact(self, store: Store, signer: Signer) -> None:
        append(store, org("acme"))
        append(store, org("globex"))
        assert self.checkpoint(store, signer) == store.head()
        assert self.checkpoint(store, signer) is None  # the head did not move
        append(store, source("acme", "web"))
        self.checkpoint(store, signer)
        report = self.verify(store)
        assert (report.verdict, report.problems) == ("intact", [])
        assert (report.checkpoints, report.proven_seq) == (2, 3)
        assert report.orgs["acme"].proven_seq == 2 and report.orgs["globex"].checkpoints == 1

    def test_verify_names_the_edited_record(self, store: Store) -> None:
        for name in ("acme", "globex", "initech"):
            append(store, org(name))
        self.tamper(store, 2)
        report = self.verify(store)
        assert report.verdict == "tampered" and report.first_bad_seq == 2
        assert any("no_update" in problem for problem in report.problems)

    def test_verify_finds_a_projection_edited_outside_the_log(self, store: Store) -> None:
        append(store, org("acme"))
        self.execute(store, "UPDATE orgs SET plan = 'enterprise'")
        report = self.verify(store)
        assert report.verdict == "tampered"
        assert any("table orgs: row 'acme' differs" in p for p in report.problems)

    # ---- concurrency across connections ---------------------------------------------------

    def test_two_writers_on_one_aggregate_exactly_one_wins(self, store: Store) -> None:
        append(store, org("acme"))
        other = self.open_another(store)
        outcomes = _race(
            [store, other],
            lambda s, i: append(s, ev.OrgPlanChanged("acme", f"plan{i}"), expected=1),
        )
        other.close()
        assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "Recorded"]
        assert store.version("acme") == 2
        assert store.head() == (2, chain_of(store.records()))

    def test_writers_appending_at_once_never_fork_the_chain(self, store: Store) -> None:
        other = self.open_another(store)

        def write(s: Store, i: int) -> None:
            for n in range(15):
                append(s, org(f"org{i}x{n}"))

        outcomes = _race([store, other], write)
        other.close()
        assert outcomes == [None, None]
        records = store.records()
        assert len(records) == 30 and store.head() == (30, chain_of(records))
        assert self.verify(store).problems == []


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(
        SIGNING_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    return Signer(key_file)


def _race(stores: list[Store], work: Callable[[Store, int], Any]) -> list[Any]:
    """Run ``work`` on each store in its own thread, all released at once; return what each
    returned or raised."""
    start = threading.Barrier(len(stores))
    outcomes: list[Any] = [None] * len(stores)

    def run(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = work(stores[i], i)
        except Exception as exc:  # the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


# ---- SQLite --------------------------------------------------------------------------------

# The product's projections too, so `audit verify` (which replays them) checks a real database.
_SQLITE_PROJECTION = (
    projections.SCHEMA
    + "CREATE TABLE IF NOT EXISTS projected (seq INTEGER PRIMARY KEY, type TEXT);"
)


def _projector(conn: sqlite3.Connection, record: Recorded) -> None:
    """The product's projections and the test's own table, the same statements on both engines
    (on PostgreSQL, the store's connection runs SQLite's parameters)."""
    if Exploding in record.payload:
        raise RuntimeError("projection failed")
    projections.project(conn, record)
    conn.execute("INSERT INTO projected VALUES (?, ?)", (record.seq, record.type))


class TestSqliteEventStore(EventStoreContract):
    refused = (sqlite3.IntegrityError,)

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = SqliteEventStore(tmp_path / "control.sqlite3", _projector, _SQLITE_PROJECTION)
        yield store
        store.close()

    def open_another(self, store: Store) -> Store:
        assert isinstance(store, SqliteEventStore)
        return SqliteEventStore(store.path, _projector, _SQLITE_PROJECTION)

    def projected(self, store: Store) -> list[tuple[int, str]]:
        assert isinstance(store, SqliteEventStore)
        return [tuple(r) for r in store.conn.execute("SELECT * FROM projected ORDER BY seq")]

    def execute(self, store: Store, statement: str) -> None:
        assert isinstance(store, SqliteEventStore)
        store.conn.execute(statement)

    def tamper(self, store: Store, seq: int) -> None:
        assert isinstance(store, SqliteEventStore)
        conn = sqlite3.connect(store.path)
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = ?", (seq,))
        conn.commit()
        conn.close()

    def verify(self, store: Store) -> Report:
        assert isinstance(store, SqliteEventStore)
        return audit_verify.verify(store.path, KEY)


# ---- PostgreSQL ----------------------------------------------------------------------------


def _pg_store(url: str) -> pgstore.PgEventStore:
    """The product's projections too, as on SQLite, and the test's own table."""
    with pgstore.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS projected (seq BIGINT PRIMARY KEY, type TEXT)")
    return pgstore.PgEventStore(url, _projector, projections.SCHEMA, projections.TABLES)


class TestPostgresEventStore(EventStoreContract):
    refused = (psycopg.errors.RestrictViolation,)

    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[Store]:
        store = _pg_store(postgres_url)
        self.url = postgres_url
        yield store
        store.close()

    def open_another(self, store: Store) -> Store:
        return _pg_store(self.url)

    def projected(self, store: Store) -> list[tuple[int, str]]:
        with pgstore.connect(self.url) as conn:
            rows = conn.execute("SELECT * FROM projected ORDER BY seq").fetchall()
        return [(r["seq"], r["type"]) for r in rows]

    def execute(self, store: Store, statement: str) -> None:
        with pgstore.connect(self.url) as conn:
            conn.execute(statement)

    def tamper(self, store: Store, seq: int) -> None:
        with pgstore.connect(self.url) as conn:
            conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update")
            conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = %s", (seq,))

    def verify(self, store: Store) -> Report:
        return pgstore.verify(self.url, KEY)


# ---- PostgreSQL only: the writer role and `events rebuild` --------------------------------


def test_the_writer_role_appends_but_cannot_edit_or_unprotect_the_log(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    owner = pgstore.open_product_store(postgres_url)
    append(owner, org("acme"))
    with pgstore.connect(postgres_url) as conn:
        conn.execute("DROP ROLE IF EXISTS astralog_writer")
        conn.execute("CREATE ROLE astralog_writer LOGIN")
        pgstore.grant_writer_role(conn, "astralog_writer")
    dbname = postgres_url.rsplit("/", 1)[1]
    writer_url = postgres_server.url(dbname, user="astralog_writer")
    writer = pgstore.open_product_store(writer_url)  # opens the existing database without DDL
    append(writer, source("acme", "web"))
    with pgstore.connect(writer_url) as conn:
        for statement in (
            "UPDATE events SET actor = 'mallory'",
            "DELETE FROM events",
            "TRUNCATE org_chain",
            "ALTER TABLE events DISABLE TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete ON events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    writer.close()
    assert pgstore.verify(postgres_url, KEY).problems == []
    owner.close()


def test_a_node_runs_as_the_writer_role_once_the_owner_made_the_tables(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    """The first start, as the owner, creates every table (log, projections, secrets, catalog,
    vectors, sessions, receipts); a node logged in as the writer role then starts without DDL
    (PostgreSQL refuses even CREATE TABLE IF NOT EXISTS to a role that does not own the table)
    and writes each of them."""

    def runtime(url: str, name: str) -> Runtime:
        settings = load_settings(data_dir=tmp_path / name, wal={"fsync": False},
                                 control={"database_url": url})  # fmt: skip
        return Runtime(settings)

    first = runtime(postgres_url, "owner")
    boot = first.bootstrap()
    assert boot is not None
    first.open_data_plane()
    asyncio.run(first.close_data_plane())
    first.close()
    with pgstore.connect(postgres_url) as conn:
        conn.execute("DROP ROLE IF EXISTS astralog_node")
        conn.execute("CREATE ROLE astralog_node LOGIN")
        pgstore.grant_writer_role(conn, "astralog_node")
    node = runtime(postgres_server.url(postgres_url.rsplit("/", 1)[1], "astralog_node"), "node")
    org = str(boot.org["id"])
    source = node.control.create_source(org, "api", "", ME)
    node.sessions.start(org, "token", idle_seconds=60, absolute_seconds=600)
    node.control.authenticate(boot.ingest_key)
    node.control.record_usage()  # credential_usage, beside the log
    data = node.open_data_plane()
    batch = BatchCommitted(object_key="k", batch_id="b", destination_id="local", org_id=org,
                           source_id=source["id"], min_ts_ns=0, max_ts_ns=1, rows=1, bytes=1,
                           schema_fingerprint="f", segment_ids=())  # fmt: skip
    assert data.catalog.record(batch)
    assert data.vectors.add(org, "era_1", [(source["id"], 0, "ev_1")]) == 1
    asyncio.run(node.close_data_plane())
    node.close()


def test_a_node_hears_of_every_append_another_node_commits(postgres_url: str) -> None:
    """What lets a revocation on one node reach the others at once (LISTEN/NOTIFY); a rolled
    back append is never announced."""
    here, there = _pg_store(postgres_url), _pg_store(postgres_url)
    heard = threading.Event()
    watch = here.watch(heard.set)
    try:
        assert heard.wait(5), "the listener never connected"  # it calls once on connecting
        heard.clear()
        with pytest.raises(RuntimeError), there.transaction():
            there.append(org("rolled-back"), ME, 0)
            raise RuntimeError("abandon the command")
        assert not heard.wait(1.5), "a rolled-back append was announced"
        read = ev.LogsRead("act_1", "acme", "token:t", "search", ["web"], "a", "b", 3)
        append(there, read)  # activity: every search appends one, and it changes no rights
        assert not heard.wait(1.5), "a search's record made the other node drop its cache"
        append(there, org("acme"))
        assert heard.wait(5), "the append was not announced"
    finally:
        watch.close()
        here.close()
        there.close()


# ---- the settings: the commands read the PostgreSQL log; backup refuses it ----------------


def test_audit_verify_reads_the_postgres_log_named_in_the_settings(
    postgres_url: str,
    signer: Signer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = pgstore.open_product_store(postgres_url)
    append(store, org("acme"))
    signer.checkpoint(store)
    store.close()
    key = tmp_path / "public.pem"
    key.write_bytes(signer.public_pem())
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASTRALOG_CONTROL__DATABASE_URL", postgres_url)
    assert main(["audit", "verify", "--public-key", str(key)]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "intact"
    assert main(["events", "rebuild"]) == 0
    assert "rebuilt projections from 1 events" in capsys.readouterr().out
    with pgstore.connect(postgres_url) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update")
        conn.execute("UPDATE events SET actor = 'mallory'")
    assert main(["audit", "verify", "--public-key", str(key)]) == 1
    assert json.loads(capsys.readouterr().out)["first_bad_seq"] == 1
    assert main(["orgs", "list"]) == 0  # the commands read the PostgreSQL log's projections
    assert [o["name"] for o in json.loads(capsys.readouterr().out)] == ["Acme"]
    assert not (tmp_path / "data" / "control.sqlite3").exists()  # no second, SQLite log
    assert not (tmp_path / "data" / "catalog.sqlite3").exists()  # the catalog is there too
    assert main(["backup", "--to", str(tmp_path / "backup.tar")]) == 2
    assert "pg_dump" in capsys.readouterr().err


# ---- the product's projections on PostgreSQL -----------------------------------------------


def _busy(runtime: Runtime, boot: Bootstrap) -> None:
    """A control plane that has been used: plans, orgs, sources, retention, keys, tokens."""
    control, org_id = runtime.control, str(boot.org["id"])
    other = control.create_org("globex", "free", ME)
    control.set_plan(str(other["id"]), "enterprise", {"retention_days": 20}, ME)
    for name in ("api", "worker"):
        created = control.create_source(org_id, name, "", ME)
        control.set_retention(org_id, created["id"], 2, ME)
        issued = control.issue_key(org_id, created["id"], ME)
        control.rotate_key(org_id, issued.credential.key_id, 30, ME)
    control.revoke_key(org_id, issued.info["id"], ME)
    token = control.issue_token(org_id, "reader", ["logs:read"], ME)
    control.revoke_token(org_id, token.info["id"], ME)


def _pg_dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with pgstore.connect(url) as conn:
        return {
            table: sorted(
                (tuple(r.values()) for r in conn.execute(f"SELECT * FROM {table}")), key=repr
            )
            for table in projections.TABLES
        }


def _sorted(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted(rows, key=repr) for table, rows in dump.items()}


def test_the_product_projections_on_postgres_match_sqlite(
    runtime: Runtime, boot: Bootstrap, postgres_url: str
) -> None:
    _busy(runtime, boot)
    records = runtime.control.store.records()
    store = pgstore.open_product_store(postgres_url)
    with store.transaction() as conn:
        for record in records:
            projections.project(conn, record)
    live = _sorted(projections.dump(runtime.control.store.conn))
    assert live["ingest_keys"] and live["tokens"] and live["plans"]
    assert _pg_dump(postgres_url) == live
    store.close()


def test_events_rebuild_on_postgres_reproduces_the_live_projections(
    runtime: Runtime, boot: Bootstrap, postgres_url: str, tmp_path: Path
) -> None:
    """What `events rebuild` runs (ControlPlane.rebuild): every projection emptied, a row nobody
    appended gone, the log replayed into them, in one transaction."""
    _busy(runtime, boot)
    store = pgstore.open_product_store(postgres_url)
    for record in runtime.control.store.records():  # the same commands, appended on PostgreSQL
        with store.transaction():
            actor = Actor(record.actor, record.client)
            store.append(record.event(), actor, store.version(record.aggregate_id))
    live = _pg_dump(postgres_url)
    assert live["ingest_keys"] and live["sources"]
    with pgstore.connect(postgres_url) as conn:
        conn.execute("INSERT INTO plans VALUES ('stray', '{}')")
    control = ControlPlane(tmp_path / "unused.sqlite3", "pepper", 5.0, postgres_url)
    assert control.rebuild() == store.head()[0]
    assert _pg_dump(postgres_url) == live
    control.close()
    store.close()
