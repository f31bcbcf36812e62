"""Tamper evidence that survives losing the box: checkpoint copies outside the database, the
head the verifier can prove, tenants verifying their own export, per-org numbering."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.cli import main
from astralog.connectors.local import LocalConnector
from astralog.controlplane import projections
from astralog.controlplane.audit_verify import max_checkpoint_age, verify
from astralog.controlplane.checkpoints import Publisher, latest_org_checkpoints, load_public_key
from astralog.controlplane.store import Actor, Recorded, connect
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer

ACTOR = Actor("test:alice", "127.0.0.1")


@pytest.fixture(autouse=True)
def _cli_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI's own data dir is an empty one unless a test says otherwise (never the cwd's)."""
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(tmp_path / "cli-data"))


def _db(runtime: Runtime) -> Path:
    return runtime.settings.path(runtime.settings.control.database)


def _key_file(runtime: Runtime) -> Path:
    path = runtime.settings.data_dir.parent / "public.pem"
    path.write_bytes(runtime.signer.public_pem())
    return path


def _activity(runtime: Runtime, org: str, names: list[str]) -> None:
    for name in names:
        runtime.control.create_source(org, name, "", ACTOR)
    runtime.signer.checkpoint(runtime.control.store)


def _publish(runtime: Runtime, bucket: LocalConnector) -> None:
    """What the server's checkpoint loop does: each org's newest checkpoint to its bucket."""
    publisher = Publisher(lambda org_id: ("bucket", bucket))
    asyncio.run(publisher.publish(latest_org_checkpoints(runtime.control.store)))


def _tamper(db: Path, *statements: str, restore: bool = True) -> None:
    """An attacker with the file: drop every append-only trigger, edit, and (unless not
    ``restore``) put the triggers back so that their absence gives nothing away."""
    conn = sqlite3.connect(db)
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger'").fetchall()
    conn.executescript("".join(f"DROP TRIGGER {t};" for t, _ in triggers) + ";".join(statements))
    if restore:
        conn.executescript(";".join(sql for _, sql in triggers))
    conn.commit()
    conn.close()


def _cut_tail(db: Path, first_cut: int) -> None:
    """Remove records from ``first_cut`` on with every checkpoint and link that covers them."""
    _tamper(
        db,
        f"DELETE FROM events WHERE seq >= {first_cut}",
        f"DELETE FROM checkpoints WHERE seq >= {first_cut}",
        f"DELETE FROM org_checkpoints WHERE org_seq > (SELECT COUNT(*) FROM org_chain c "
        f"WHERE c.org_id = org_checkpoints.org_id AND c.seq < {first_cut})",
        f"DELETE FROM org_chain WHERE seq >= {first_cut}",
        "DELETE FROM heartbeat",
    )
    conn = connect(db)  # and the state those records made, as `astralog events rebuild` would
    with conn:
        projections.rebuild(
            conn, [Recorded(**dict(r)) for r in conn.execute("SELECT * FROM events")]
        )
    conn.close()


def _offline(runtime: Runtime, *extra: str) -> int:
    """The offline verifier: the copied file and the public key, nothing of this data dir."""
    args = ["audit", "verify", "--database", str(_db(runtime))]
    return main([*args, "--public-key", str(_key_file(runtime)), *extra])


@pytest.fixture
def cut(runtime: Runtime, boot: Bootstrap, tmp_path: Path) -> LocalConnector:
    """A log whose newest records were cut together with their checkpoints, after the org's
    checkpoints had been copied to its bucket."""
    bucket = LocalConnector(tmp_path / "customer-bucket")
    org = str(boot.org["id"])
    _activity(runtime, org, ["api", "worker"])
    first_cut = runtime.control.store.head()[0] + 1
    _activity(runtime, org, ["payments", "ledger"])
    _publish(runtime, bucket)
    runtime.control.close()
    _cut_tail(_db(runtime), first_cut)
    return bucket


def test_cut_tail_with_its_checkpoints_fails_against_the_outside_copies(  # type: ignore[no-untyped-def]
    runtime: Runtime, boot: Bootstrap, cut: LocalConnector, capsys
) -> None:
    assert _offline(runtime, "--checkpoints", str(cut.root)) == 1
    err = capsys.readouterr().err
    assert "TAMPERED" in err
    assert f"of org {boot.org['id']} is missing" in err and "records were cut" in err


def test_cut_tail_without_outside_copies_is_not_a_silent_ok(runtime: Runtime, cut, capsys) -> None:  # type: ignore[no-untyped-def]
    status = _offline(runtime)
    captured = capsys.readouterr()
    assert "WARNING: no checkpoint copies outside this database" in captured.err
    assert json.loads(captured.out)["warnings"]
    assert status == 0  # intact as far as the file shows; --strict turns the doubt into 3
    assert _offline(runtime, "--strict") == 3


def test_deleting_every_checkpoint_is_unproven_and_caught_by_the_copies(  # type: ignore[no-untyped-def]
    runtime: Runtime, boot: Bootstrap, tmp_path: Path, capsys
) -> None:
    bucket = LocalConnector(tmp_path / "customer-bucket")
    _activity(runtime, str(boot.org["id"]), ["api"])
    _publish(runtime, bucket)
    runtime.control.close()
    _tamper(_db(runtime), "DELETE FROM checkpoints", "DELETE FROM org_checkpoints")

    assert _offline(runtime) == 3
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and report["verdict"] == "unproven"
    assert "UNPROVEN" in captured.err and "no signed checkpoint" in captured.err

    assert _offline(runtime, "--checkpoints", str(bucket.root)) == 1
    assert "missing from this database: checkpoints were deleted" in capsys.readouterr().err


def test_verify_reports_the_head_it_can_prove_and_warns_when_stale(
    runtime: Runtime, boot: Bootstrap
) -> None:
    _activity(runtime, str(boot.org["id"]), ["api"])
    runtime.control.create_source(str(boot.org["id"]), "late", "", ACTOR)  # not yet signed
    key = load_public_key(runtime.signer.public_pem())
    age = max_checkpoint_age(runtime.settings.control.checkpoint_interval_seconds)
    report = verify(_db(runtime), key, max_age=age)
    head = runtime.control.store.head()[0]
    assert report.ok and report.proven_at
    assert report.proven_seq < head == report.head_seq
    assert report.unproven_records == head - report.proven_seq
    assert not report.warnings

    later = datetime.now(UTC) + age + timedelta(seconds=5)
    stale = verify(_db(runtime), key, max_age=age, now=later)
    assert stale.ok and "removed together with their checkpoints" in stale.warnings[0]
    # A quiet log is re-signed (the heartbeat) every interval, so quiet is not stale.
    runtime.signer.checkpoint(runtime.control.store)
    assert verify(_db(runtime), key, max_age=age, now=later - age / 2).warnings == []


def test_the_server_writes_checkpoints_into_the_org_destination(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    """The checkpoint loop publishes at start: the boot org's head is already in its bucket."""
    org = str(boot.org["id"])
    bucket = LocalConnector(runtime.settings.path(runtime.settings.storage.local_root))
    for _ in range(100):
        copies = asyncio.run(bucket.list_checkpoints(org))
        if copies:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert copies and f"org={org}/_astralog/checkpoints/" in copies[-1][0]
    document = json.loads(copies[-1][1])
    assert document["org_id"] == org and document["kind"] == "org"
    assert document["seq"] == runtime.control.store.org_head(org)[0]


def _export(client: TestClient, token: str, path: Path) -> list[str]:
    response = client.get("/v1/audit?format=ndjson", headers=bearer(token))
    assert response.status_code == 200
    path.write_text(response.text)
    return response.text.splitlines()


def _verify_export(runtime: Runtime, path: Path) -> int:
    return main(["audit", "verify", "--export", str(path), "--public-key", str(_key_file(runtime))])


def test_a_tenant_verifies_its_own_export(  # type: ignore[no-untyped-def]
    client: TestClient, runtime: Runtime, boot: Bootstrap, tmp_path: Path, capsys
) -> None:
    _activity(runtime, str(boot.org["id"]), ["api", "worker"])
    runtime.control.create_source(str(boot.org["id"]), "unsigned", "", ACTOR)
    export = tmp_path / "audit.ndjson"
    lines = _export(client, boot.admin_token, export)
    assert any("checkpoint" in json.loads(line) for line in lines)
    assert _verify_export(runtime, export) == 0
    assert "chain OK" in capsys.readouterr().err

    def rewritten(change) -> int:  # type: ignore[no-untyped-def]
        records = [json.loads(line) for line in lines]
        export.write_text("".join(json.dumps(r) + "\n" for r in change(records)))
        return _verify_export(runtime, export)

    def edit(records):  # type: ignore[no-untyped-def]
        records[3]["actor"] = "mallory"
        return records

    assert rewritten(edit) == 1
    assert "TAMPERED: record 4 was edited" in capsys.readouterr().err
    assert rewritten(lambda records: records[:2] + records[3:]) == 1
    assert "TAMPERED: record 3 missing (dropped) before record 4" in capsys.readouterr().err
    assert rewritten(lambda records: records[:-2]) == 1
    err = capsys.readouterr().err
    assert f"TAMPERED: the export ends at record {len(lines) - 2} without its signed end" in err


def test_tenants_see_their_own_numbering_and_checkpoints_only(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    op = bearer(boot.operator_token)
    _activity(runtime, str(boot.org["id"]), ["api", "worker", "db"])  # other tenants' activity
    org = client.post("/v1/orgs", json={"name": "quiet", "plan": "pro"}, headers=op).json()
    token = client.post(
        f"/v1/orgs/{org['id']}/tokens", json={"name": "a", "scopes": ["audit:read"]}, headers=op
    ).json()["token"]
    runtime.signer.checkpoint(runtime.control.store)

    own = client.get("/v1/audit?limit=1000", headers=bearer(token)).json()["events"]
    assert [e["seq"] for e in own] == list(range(1, len(own) + 1))
    page = client.get("/v1/audit?limit=1&after=1", headers=bearer(token)).json()
    assert [e["seq"] for e in page["events"]] == [2]
    theirs = client.get("/v1/audit/verify", headers=bearer(token)).json()
    assert theirs["ok"] and theirs["checkpoints"] == 1
    assert theirs["head_seq"] == theirs["proven_seq"] == len(own)

    everything = client.get("/v1/audit/verify", headers=op).json()
    assert everything["checkpoints"] > 1 and everything["head_seq"] > len(own)
    operator_view = client.get("/v1/audit?limit=1000", headers=op).json()["events"]
    assert operator_view[-1]["seq"] == everything["head_seq"]


# -- red-team findings: a wiped log, malformed rows, export gaps, edited projections -----------


def _own(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    """The CLI runs on the runtime's data dir (so the destinations are known)."""
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(runtime.settings.data_dir))


def _embedded(runtime: Runtime) -> LocalConnector:
    return LocalConnector(runtime.settings.path(runtime.settings.storage.local_root))


_WIPE = (
    "DELETE FROM events",
    "DELETE FROM checkpoints",
    "DELETE FROM org_checkpoints",
    "DELETE FROM heartbeat",
    "DELETE FROM org_chain",
)


def test_a_wiped_log_is_caught_by_the_copies_in_the_bucket(  # type: ignore[no-untyped-def]
    runtime: Runtime, boot: Bootstrap, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """The orgs whose copies are read come from the destinations, not from the wiped database."""
    _activity(runtime, str(boot.org["id"]), ["api"])
    _publish(runtime, _embedded(runtime))
    runtime.control.close()
    _tamper(_db(runtime), *_WIPE)
    _own(monkeypatch, runtime)
    key = str(_key_file(runtime))

    assert main(["audit", "verify", "--public-key", key]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "tampered"
    assert any(f"org {boot.org['id']}" in p for p in report["problems"])
    copy = tmp_path / "copied.db"
    copy.write_bytes(_db(runtime).read_bytes())
    for extra in ([], ["--destination-checkpoints"]):
        assert main(["audit", "verify", "--database", str(copy), "--public-key", key, *extra]) == 1
        assert json.loads(capsys.readouterr().out)["verdict"] == "tampered"


def test_an_empty_log_is_never_intact(runtime: Runtime, boot: Bootstrap, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime.control.close()
    _tamper(_db(runtime), *_WIPE)
    status = main(["audit", "verify", "--database", str(_db(runtime))])
    assert status != 0
    report = verify(_db(runtime), load_public_key(runtime.signer.public_pem()))
    assert report.verdict != "intact" and not report.ok


def test_newest_record_cut_with_every_checkpoint_is_caught_by_default(  # type: ignore[no-untyped-def]
    runtime: Runtime, boot: Bootstrap, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """--database on a copy still reads the outside copies when the destinations are known."""
    _activity(runtime, str(boot.org["id"]), ["api", "worker"])
    _publish(runtime, _embedded(runtime))
    head = runtime.control.store.head()[0]
    runtime.control.close()
    _cut_tail(_db(runtime), head)
    _tamper(_db(runtime), "DELETE FROM checkpoints", "DELETE FROM org_checkpoints")
    _own(monkeypatch, runtime)
    copy = tmp_path / "copied.db"
    copy.write_bytes(_db(runtime).read_bytes())
    key = str(_key_file(runtime))
    assert main(["audit", "verify", "--database", str(copy), "--public-key", key]) == 1
    capsys.readouterr()
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(tmp_path / "elsewhere"))
    assert main(["audit", "verify", "--database", str(copy), "--public-key", key]) == 3
    assert "outside copies were not consulted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "seq"),
    [
        ("UPDATE events SET payload = CAST(payload AS BLOB) WHERE seq = 4", 4),
        (  # NOT NULL goes with a table rebuilt without its constraints
            "CREATE TABLE loose AS SELECT * FROM events; DROP TABLE events;"
            " ALTER TABLE loose RENAME TO events; UPDATE events SET actor = NULL WHERE seq = 3",
            3,
        ),
        ("UPDATE events SET version = 'two' WHERE seq = 2", 2),
        ("UPDATE events SET client = CAST(X'FF00FE' AS TEXT) WHERE seq = 5", 5),
        ("UPDATE events SET payload = '{not json' WHERE seq = 4", 4),
    ],
)
def test_a_malformed_row_is_tampering_not_a_crash(  # type: ignore[no-untyped-def]
    client: TestClient, runtime: Runtime, boot: Bootstrap, edit: str, seq: int, capsys
) -> None:
    _activity(runtime, str(boot.org["id"]), ["api"])
    _tamper(_db(runtime), edit)
    assert _offline(runtime, "--no-destination-checkpoints") == 1
    assert f"record {seq}" in capsys.readouterr().err
    response = client.get("/v1/audit/verify", headers=bearer(boot.operator_token))
    assert response.status_code == 200
    assert response.json()["verdict"] == "tampered"


def test_an_export_proves_only_what_it_holds(  # type: ignore[no-untyped-def]
    client: TestClient, runtime: Runtime, boot: Bootstrap, tmp_path: Path, capsys
) -> None:
    _activity(runtime, str(boot.org["id"]), ["api", "worker"])
    export = tmp_path / "audit.ndjson"
    lines = _export(client, boot.admin_token, export)
    records = [json.loads(line) for line in lines]

    def status(rows: list[dict[str, object]]) -> int:
        export.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return _verify_export(runtime, export)

    assert status([]) == 3
    assert "UNPROVEN" in capsys.readouterr().err
    records[1]["note"] = "not covered by the hash"
    assert status(records) == 1
    assert "note" in capsys.readouterr().err
    del records[1]["note"]
    records[2]["seq"] = "3"
    assert status(records) == 1
    records[2]["seq"] = 3
    assert status(records[2:]) == 1
    assert "records 1..2" in capsys.readouterr().err
    partial = client.get("/v1/audit?format=ndjson&after=2", headers=bearer(boot.admin_token))
    export.write_text(partial.text)
    assert _verify_export(runtime, export) == 0
    assert "starts after record 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "table"),
    [
        ("UPDATE tokens SET scopes = '[\"admin\"]' WHERE kind != 'operator'", "tokens"),
        ("UPDATE tokens SET org_id = 'org_other' WHERE kind != 'operator'", "tokens"),
        ("UPDATE orgs SET plan = 'enterprise'", "orgs"),
        ("UPDATE ingest_keys SET revoked_at = NULL", "ingest_keys"),
    ],
)
def test_an_edited_projection_is_tampering(  # type: ignore[no-untyped-def]
    runtime: Runtime, boot: Bootstrap, edit: str, table: str, capsys
) -> None:
    org = str(boot.org["id"])
    source = runtime.control.create_source(org, "api", "", ACTOR)
    key = runtime.control.issue_key(org, source["id"], ACTOR)
    runtime.control.revoke_key(org, key.info["id"], ACTOR)
    runtime.signer.checkpoint(runtime.control.store)
    runtime.control.close()
    _tamper(_db(runtime), edit)
    assert _offline(runtime, "--no-destination-checkpoints") == 1
    assert f"table {table}" in capsys.readouterr().err


def test_dropped_append_only_triggers_are_a_finding(
    runtime: Runtime, boot: Bootstrap, capsys
) -> None:  # type: ignore[no-untyped-def]
    runtime.signer.checkpoint(runtime.control.store)
    runtime.control.close()
    _tamper(_db(runtime), restore=False)
    assert _offline(runtime, "--no-destination-checkpoints") == 1
    assert "append-only trigger" in capsys.readouterr().err


def test_a_restarted_server_serves_the_log_not_an_edited_projection(
    runtime: Runtime, boot: Bootstrap, caplog: pytest.LogCaptureFixture
) -> None:
    org = str(boot.org["id"])
    source = runtime.control.create_source(org, "api", "", ACTOR)
    key = runtime.control.issue_key(org, source["id"], ACTOR)
    runtime.control.revoke_key(org, key.info["id"], ACTOR)
    runtime.control.close()
    _tamper(_db(runtime), "UPDATE ingest_keys SET revoked_at = NULL")  # no trigger guards these

    restarted = Runtime(runtime.settings)
    try:
        with TestClient(create_app(runtime.settings, restarted)) as client:
            answer = client.post(
                "/v1/ingest", content=b'{"message":"x"}', headers=bearer(key.credential.secret)
            )
        assert answer.status_code == 401, "the revocation in the log wins over the edited row"
        assert "projections differ from the event log" in caplog.text
        assert restarted.restore_projections() == [], "rebuilt: nothing differs any more"
    finally:
        restarted.close()
