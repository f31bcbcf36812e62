"""The hash-chained control-plane log: append-only, optimistic concurrency, rebuild, tampering."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from astralog.cli import main
from astralog.controlplane import projections
from astralog.controlplane.audit_verify import verify
from astralog.controlplane.checkpoints import load_public_key
from astralog.controlplane.events import SourceCreated
from astralog.controlplane.store import Actor
from astralog.errors import Conflict
from astralog.runtime import Bootstrap, Runtime

ACTOR = Actor("test:alice", "127.0.0.1")


def _busy_runtime(runtime: Runtime, boot: Bootstrap) -> None:
    org = str(boot.org["id"])
    control = runtime.control
    for name in ("api", "worker", "db"):
        source = control.create_source(org, name, "", ACTOR)
        issued = control.issue_key(org, source["id"], ACTOR)
        control.rotate_key(org, issued.credential.key_id, 30, ACTOR)
    control.revoke_key(org, issued.info["id"], ACTOR)
    control.issue_token(org, "reader", ["logs:read"], ACTOR)
    runtime.signer.checkpoint(control.store)


def _db(runtime: Runtime) -> Path:
    return runtime.settings.path(runtime.settings.control.database)


def _report(runtime: Runtime):  # type: ignore[no-untyped-def]
    return verify(_db(runtime), load_public_key(runtime.signer.public_pem()))


def test_triggers_refuse_update_and_delete(runtime: Runtime, boot: Bootstrap) -> None:
    conn = runtime.control.store.conn
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM checkpoints")


def test_records_are_chained_with_actor_and_client(runtime: Runtime, boot: Bootstrap) -> None:
    _busy_runtime(runtime, boot)
    records = runtime.control.store.records()
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    mine = [r for r in records if r.actor == "test:alice"]
    assert {r.type for r in mine} >= {"SourceCreated", "IngestKeyRotated", "IngestKeyRevoked"}
    assert all(r.client == "127.0.0.1" for r in mine)


def test_append_checks_the_expected_aggregate_version(runtime: Runtime, boot: Bootstrap) -> None:
    store = runtime.control.store
    before = store.head()
    event = SourceCreated("src_dupe", str(boot.org["id"]), "dupe")
    with store.transaction():
        store.append(event, ACTOR, 0)
    with pytest.raises(Conflict, match="changed concurrently"), store.transaction():
        store.append(SourceCreated("src_dupe", str(boot.org["id"]), "dupe2"), ACTOR, 0)
    assert store.head()[0] == before[0] + 1


def test_rebuild_from_zero_reproduces_the_live_projections(
    runtime: Runtime, boot: Bootstrap
) -> None:
    _busy_runtime(runtime, boot)
    live = projections.dump(runtime.control.store.conn)
    assert live["ingest_keys"] and live["tokens"] and live["sources"]
    count = runtime.control.rebuild()
    assert count == runtime.control.store.head()[0]
    assert projections.dump(runtime.control.store.conn) == live


def test_cli_rebuild_and_verify(runtime: Runtime, boot: Bootstrap, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _busy_runtime(runtime, boot)
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(runtime.settings.data_dir))
    assert main(["events", "rebuild"]) == 0
    assert main(["audit", "verify"]) == 0
    assert "chain OK" in capsys.readouterr().err


@pytest.mark.parametrize(
    "payload",
    ['{"unknown_field": 1}', '"not an object"', "{not json"],
    ids=["unknown-field", "not-an-object", "not-json"],
)
def test_rebuild_names_the_event_it_cannot_read_and_changes_nothing(
    runtime: Runtime,
    boot: Bootstrap,
    monkeypatch,
    capsys,
    payload: str,  # type: ignore[no-untyped-def]
) -> None:
    _busy_runtime(runtime, boot)
    before = projections.dump(runtime.control.store.conn)
    db = runtime.settings.data_dir / "control.sqlite3"
    runtime.close()
    _tamper(db, f"UPDATE events SET payload = '{payload}' WHERE seq = 6")
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(runtime.settings.data_dir))
    assert main(["events", "rebuild"]) == 2
    err = capsys.readouterr().err
    assert "error: event 6 (" in err and "cannot be replayed" in err, err
    assert "Nothing was rebuilt" in err and "Traceback" not in err
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    assert projections.dump(conn) == before
    conn.close()


def _tamper(db: Path, *statements: str) -> None:
    """What an attacker with write access to the file can do: drop the triggers and edit."""
    conn = sqlite3.connect(db)
    conn.executescript(
        "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;"
        "DROP TRIGGER checkpoints_no_update; DROP TRIGGER checkpoints_no_delete;"
        + ";".join(statements)
    )
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("statements", "bad_seq", "phrase"),
    [
        (["UPDATE events SET actor = 'mallory' WHERE seq = 5"], 5, "was edited"),
        (["UPDATE events SET payload = replace(payload, 'api', 'ap1') WHERE seq = 9"], 9, "edited"),
        (["DELETE FROM events WHERE seq = 7"], 7, "missing"),
        (
            [
                "UPDATE events SET seq = -1 WHERE seq = 10",
                "UPDATE events SET seq = 10 WHERE seq = 11",
                "UPDATE events SET seq = 11 WHERE seq = -1",
            ],
            10,
            "does not follow",
        ),
        (["DELETE FROM events WHERE seq = (SELECT MAX(seq) FROM events)"], "head", "missing"),
        (["UPDATE checkpoints SET signature = 'AAAA'"], "first-checkpoint", "invalid signature"),
    ],
    ids=["edit-actor", "edit-payload", "drop-middle", "swap-two", "drop-tail", "forge-signature"],
)
def test_tampering_with_the_file_is_detected(  # type: ignore[no-untyped-def]
    runtime: Runtime, boot: Bootstrap, statements, bad_seq, phrase, monkeypatch, capsys
) -> None:
    _busy_runtime(runtime, boot)
    assert _report(runtime).ok
    head = runtime.control.store.head()[0]
    first_checkpoint = runtime.control.store.conn.execute("SELECT MIN(seq) FROM checkpoints")
    expected = {"head": head, "first-checkpoint": first_checkpoint.fetchone()[0]}.get(
        bad_seq, bad_seq
    )
    runtime.control.close()
    _tamper(_db(runtime), *statements)
    report = _report(runtime)
    assert not report.ok
    assert phrase in report.problems[0]
    assert report.first_bad_seq == expected
    # The offline CLI verifier, with only the file and the exported public key, agrees.
    key_file = runtime.settings.data_dir / "public.pem"
    key_file.write_bytes(runtime.signer.public_pem())
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(runtime.settings.data_dir / "elsewhere"))
    assert (
        main(["audit", "verify", "--database", str(_db(runtime)), "--public-key", str(key_file)])
        == 1
    )
    assert "TAMPERED" in capsys.readouterr().err


def test_checkpoint_signed_by_another_key_is_rejected(
    runtime: Runtime, boot: Bootstrap, tmp_path: Path
) -> None:
    from astralog.controlplane.checkpoints import Signer

    stranger = Signer(tmp_path / "stranger.key")
    report = verify(_db(runtime), load_public_key(stranger.public_pem()))
    assert not report.ok
    assert "invalid signature" in report.problems[0]
