"""Org export end to end: an owner, freshly signed in, exports the org from the embedded bucket,
S3 (moto server) and ClickHouse (chDB); the archive verifies offline, tampering is caught, an
interrupted job resumes where it stopped, and nobody else can ask for or fetch one."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi.testclient import TestClient

from astralog.api.routes.exports import exports_of
from astralog.cli import main as cli
from astralog.connectors.local import LocalConnector
from astralog.controlplane.audit_export import verify_export
from astralog.controlplane.checkpoints import load_public_key
from astralog.export_verify import ExportReport, verify_export_archive
from astralog.org_export import Exports
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer
from tests.lifecycle_helpers import Headers
from tests.lifecycle_helpers import clickhouse as clickhouse
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import settings as settings
from tests.lifecycle_helpers import signed_in as signed_in
from tests.rbac_helpers import Member, add_member, session_cookie
from tests.s3_server import S3Bucket
from tests.test_byob import activate, create_s3
from tests.test_erasure import SECRET, UNFLUSHED, approve, ask, erase
from tests.test_erasure import admin as admin
from tests.test_erasure import ingest as erasure_ingest
from tests.test_holds import committed, ingest_days_ago

pytest_plugins = ["tests.s3_server"]  # s3_bucket


def export(
    client: TestClient, headers: Headers, wait_for: str | None = None, **body: Any
) -> dict[str, Any]:
    """Ask for an export (or take the one ``wait_for`` names) and wait until it is done."""
    export_id = wait_for
    if export_id is None:
        response = client.post("/v1/exports", json=body, headers=headers)
        assert response.status_code == 202, response.text
        export_id = response.json()["id"]
    deadline = time.monotonic() + 30
    while (state := client.get(f"/v1/exports/{export_id}", headers=headers).json())[
        "state"
    ] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state["state"] == "done", state
    return dict(state)


def download(client: TestClient, headers: Headers, export_id: str, to: Path) -> Path:
    with client.stream("GET", f"/v1/exports/{export_id}/download", headers=headers) as response:
        assert response.status_code == 200, response.read()
        with open(to, "wb") as out:
            for block in response.iter_bytes():
                out.write(block)
    return to


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def verified(runtime: Runtime, path: Path, private: X25519PrivateKey | None = None) -> ExportReport:
    return verify_export_archive(path, load_public_key(runtime.signer.public_pem()), private)


def audit_types(client: TestClient, boot: Bootstrap) -> list[str]:
    events = client.get("/v1/audit?limit=1000", headers=bearer(boot.admin_token)).json()["events"]
    return [e["type"] for e in events]


def exported_and_checked(
    client: TestClient, runtime: Runtime, boot: Bootstrap, signed_in: Headers, tmp_path: Path,
    stored: Callable[[str], bytes | None], batches: int,
) -> dict[str, bytes]:  # fmt: skip
    """Export, download, verify offline; every object equals what its destination stores."""
    state = export(client, signed_in)
    assert state["objects_total"] == state["objects_done"] == batches
    path = download(client, signed_in, state["id"], tmp_path / "export.tar")
    report = verified(runtime, path)
    assert report.ok, report.problems
    files = members(path)
    manifest = json.loads(files["manifest.json"])
    assert len(manifest["objects"]) == batches and report.files == len(manifest["files"])
    for obj in manifest["objects"]:
        expected = stored(obj["key"])
        if expected is not None:
            assert files[obj["path"]] == expected, obj
    assert verify_export(files["audit.ndjson"].decode().splitlines(), _key(runtime)).ok
    types = audit_types(client, boot)
    for kind in ("ExportRequested", "ExportCompleted", "ExportDownloaded"):
        assert kind in types
    return files


def _key(runtime: Runtime) -> Any:
    return load_public_key(runtime.signer.public_pem())


# ---- each kind of destination -------------------------------------------------------------------


def test_export_from_the_embedded_bucket_verifies_offline(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, signed_in: Headers,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ingest_days_ago(client, boot, 2, 1)
    committed(runtime, owner.org_id, 2)
    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    files = exported_and_checked(
        client, runtime, boot, signed_in, tmp_path, lambda key: (bucket / key).read_bytes(), 2
    )
    # Control-plane state of the org, never a secret.
    tokens = files["control/tokens.ndjson"].decode()
    assert "bootstrap-admin" in tokens and "digest" not in tokens
    assert "bootstrap-operator" not in tokens  # no other org's (nor the operator's) rows
    assert boot.source["id"] in files["control/sources.ndjson"].decode()
    assert "digest" not in files["control/ingest_keys.ndjson"].decode()
    # The CLI verifier: exit 0 on the archive, with the public key alone.
    pem = tmp_path / "instance.pem"
    pem.write_bytes(runtime.signer.public_pem())
    archive = str(tmp_path / "export.tar")
    assert cli(["export", "verify", archive, "--public-key", str(pem)]) == 0
    assert '"ok": true' in capsys.readouterr().out


def test_export_from_s3_covers_every_destination_the_org_used(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, signed_in: Headers,
    tmp_path: Path, s3_bucket: S3Bucket,
) -> None:  # fmt: skip
    ingest_days_ago(client, boot, 3)
    committed(runtime, owner.org_id, 1)  # the embedded bucket, before BYOB
    admin = bearer(boot.admin_token)
    connector = create_s3(client, admin, s3_bucket)
    activate(client, admin, connector["id"])
    ingest_days_ago(client, boot, 1)
    committed(runtime, owner.org_id, 2)
    s3 = s3_bucket.server.admin("s3")

    def stored(key: str) -> bytes | None:
        full = next(k for k in s3_bucket.keys() if k.endswith(key))  # noqa: SIM118
        body: bytes = s3.get_object(Bucket=s3_bucket.name, Key=full)["Body"].read()
        return body if key.startswith("org=") and full.endswith(key) else None

    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    files = exported_and_checked(
        client, runtime, boot, signed_in, tmp_path,
        lambda key: (bucket / key).read_bytes() if (bucket / key).exists() else stored(key), 2,
    )  # fmt: skip
    destinations = {p.split("/")[1] for p in files if p.startswith("objects/")}
    assert destinations == {"local", connector["id"]}
    assert "secret" not in files["control/connectors.ndjson"].decode().replace('"secrets"', "")


def test_export_from_clickhouse_writes_each_batch_as_parquet(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, signed_in: Headers,
    tmp_path: Path, clickhouse: tuple[Client, str],
) -> None:  # fmt: skip
    ingest_days_ago(client, boot, 2, 1)
    committed(runtime, owner.org_id, 2)
    files = exported_and_checked(client, runtime, boot, signed_in, tmp_path, lambda key: None, 2)
    manifest = json.loads(files["manifest.json"])
    assert all(not o["as_stored"] for o in manifest["objects"])  # rows, re-encoded per batch
    for obj in manifest["objects"]:
        table = pq.read_table(io.BytesIO(files[obj["path"]]))
        assert table.num_rows == obj["rows"] == 1 and "Body" in table.column_names
    assert "ch-secret" not in b"".join(files.values()).decode(errors="replace")


# ---- encryption and tampering -------------------------------------------------------------------


def _x25519() -> tuple[X25519PrivateKey, str]:
    private = X25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, pem.decode()


def test_an_export_encrypted_to_the_customer_opens_only_with_their_key(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, signed_in: Headers,
    tmp_path: Path,
) -> None:  # fmt: skip
    ingest_days_ago(client, boot, 1)
    committed(runtime, owner.org_id, 1)
    private, public = _x25519()
    state = export(client, signed_in, recipient=public)
    assert state["encrypted"]
    path = download(client, signed_in, state["id"], tmp_path / "export.tar.enc")
    with pytest.raises(tarfile.TarError), tarfile.open(path):
        pass  # nothing readable without the key
    assert verified(runtime, path, private).ok
    assert "encrypted" in verified(runtime, path).problems[0]
    assert not verified(runtime, path, X25519PrivateKey.generate()).ok
    raw = path.read_bytes()
    cut = tmp_path / "cut.enc"
    cut.write_bytes(raw[:-100])
    assert not verified(runtime, cut, private).ok
    flipped = tmp_path / "flipped.enc"
    flipped.write_bytes(raw[:200] + bytes([raw[200] ^ 1]) + raw[201:])
    assert "does not decrypt" in verified(runtime, flipped, private).problems[0]


def _rewrite(path: Path, to: Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> Path:
    files = change(members(path))
    with tarfile.open(to, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return to


def test_tampering_is_caught(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, signed_in: Headers,
    tmp_path: Path,
) -> None:  # fmt: skip
    ingest_days_ago(client, boot, 1)
    committed(runtime, owner.org_id, 1)
    state = export(client, signed_in)
    path = download(client, signed_in, state["id"], tmp_path / "export.tar")
    assert verified(runtime, path).ok
    same = _rewrite(path, tmp_path / "same.tar", lambda f: f)
    assert verified(runtime, same).ok  # a rewrite alone changes nothing the manifest covers

    def edit_audit(files: dict[str, bytes]) -> dict[str, bytes]:
        return files | {"audit.ndjson": files["audit.ndjson"].replace(b"demo", b"omed")}

    def edit_manifest(files: dict[str, bytes]) -> dict[str, bytes]:
        doc = json.loads(files["manifest.json"])
        doc["files"] = [f for f in doc["files"] if f["path"] != "audit.ndjson"]
        return files | {"manifest.json": json.dumps(doc).encode()}

    def drop_object(files: dict[str, bytes]) -> dict[str, bytes]:
        return {k: v for k, v in files.items() if not k.startswith("objects/")}

    def add_file(files: dict[str, bytes]) -> dict[str, bytes]:
        return files | {"objects/local/extra.parquet": b"PAR1"}

    for change, says in (
        (edit_audit, "audit.ndjson was altered"),
        (edit_manifest, "signature does not match"),
        (drop_object, "missing from the archive"),
        (add_file, "not (or not once) in the manifest"),
    ):
        report = verified(runtime, _rewrite(path, tmp_path / f"{change.__name__}.tar", change))
        assert not report.ok and any(says in p for p in report.problems), report.problems
    other = Ed25519PrivateKey.generate().public_key()
    assert not verify_export_archive(path, other).ok
    pem = tmp_path / "instance.pem"
    pem.write_bytes(runtime.signer.public_pem())
    tampered = str(tmp_path / "edit_audit.tar")
    assert cli(["export", "verify", tampered, "--public-key", str(pem)]) == 1
    assert cli(["export", "verify", str(tmp_path / "none.tar"), "--public-key", str(pem)]) == 2


# ---- resuming ------------------------------------------------------------------------------------


def test_an_interrupted_export_resumes_where_it_stopped(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, signed_in: Headers,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ingest_days_ago(client, boot, 3, 2, 1)
    committed(runtime, owner.org_id, 3)
    reads: list[str] = []
    real_read = LocalConnector.read_object

    async def stops_at_the_second(self: LocalConnector, key: str) -> bytes:
        reads.append(key)
        if len(reads) == 2:
            raise asyncio.CancelledError  # the process stops mid-copy
        return await real_read(self, key)

    monkeypatch.setattr(LocalConnector, "read_object", stops_at_the_second)
    response = client.post("/v1/exports", json={}, headers=signed_in)
    export_id = response.json()["id"]
    deadline = time.monotonic() + 20
    while len(reads) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    state = client.get(f"/v1/exports/{export_id}", headers=signed_in).json()
    assert state["state"] == "running" and state["objects_done"] == 1, state

    # A restart: a new job runner over the same state continues, copying only what is left.
    monkeypatch.setattr(LocalConnector, "read_object", real_read)
    first = exports_of(runtime)
    restarted = Exports(first.root, first.sources)
    copied: list[str] = []

    async def counted(self: LocalConnector, key: str) -> bytes:
        copied.append(key)
        return await real_read(self, key)

    monkeypatch.setattr(LocalConnector, "read_object", counted)
    client.portal.call(restarted.run, export_id)  # type: ignore[union-attr]
    assert sorted(copied) == sorted(
        reads[1:] + [k for k in _all_keys(runtime, owner) if k not in reads]
    )
    assert len(copied) == 2 and reads[0] not in copied
    state = client.get(f"/v1/exports/{export_id}", headers=signed_in).json()
    assert state["state"] == "done" and state["objects_done"] == 3
    path = download(client, signed_in, export_id, tmp_path / "export.tar")
    assert verified(runtime, path).ok
    restarted.close()


def _all_keys(runtime: Runtime, owner: Member) -> list[str]:
    return [b.object_key for b in runtime.data.catalog.batches(owner.org_id, None, 0, 2**62)]


# ---- who may ------------------------------------------------------------------------------------


def test_only_an_owner_freshly_signed_in_may_export(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, signed_in: Headers
) -> None:
    refused = [
        (bearer(boot.admin_token), "owner of the org"),
        (owner.headers, "session_required"),
        (session_cookie(runtime, add_member(runtime, owner.org_id, "admin")), "owner of the org"),
        (_aged(runtime, session_cookie(runtime, owner)), "reauth_required"),
    ]
    for headers, says in refused:
        response = client.post("/v1/exports", json={}, headers=headers)
        assert response.status_code == 403 and says in response.text, response.text
    assert client.post("/v1/exports", json={}, headers=bearer(boot.operator_token)).status_code in (
        401,
        403,
    )
    state = export(client, signed_in)
    path = f"/v1/exports/{state['id']}"
    assert client.get(f"{path}/download", headers=owner.headers).status_code == 403
    stale = _aged(runtime, session_cookie(runtime, owner))
    assert client.get(f"{path}/download", headers=stale).status_code == 403
    assert client.get(path, headers=bearer(boot.admin_token)).status_code == 403

    # Another org's owner sees nothing of it.
    globex = runtime.control.create_org("globex", "pro", owner_actor())
    theirs = session_cookie(runtime, add_member(runtime, globex["id"], "owner", tag="g"))
    assert client.get(path, headers=theirs).status_code == 404
    assert client.get(f"{path}/download", headers=theirs).status_code == 404
    assert client.get("/v1/exports", headers=theirs).json() == []
    assert "ExportDownloaded" not in audit_types(client, boot)


def _aged(runtime: Runtime, headers: Headers) -> Headers:
    """A session signed in an hour ago: exporting wants a re-authentication."""
    session = runtime.sessions.get(headers["Cookie"].split("=", 1)[1])
    assert session is not None
    runtime.sessions.update(session, auth_time=time.time() - 3600)
    return headers


def owner_actor() -> Any:
    from astralog.controlplane.store import Actor

    return Actor("test", "local")


HOSTILE: list[Any] = [
    {"recipient": "not a key"},
    {"recipient": ""},
    {"recipient": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
    {"recipient": "x" * 5000},
    {"recipient": 5},
    {"org_id": "org_other"},
    [1],
    "export",
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_input_is_a_4xx_problem(client: TestClient, signed_in: Headers, body: Any) -> None:
    response = client.post("/v1/exports", json=body, headers=signed_in)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/exports", headers=signed_in).json() == []


def test_a_signing_key_as_recipient_and_hostile_ids_are_4xx(
    client: TestClient, signed_in: Headers
) -> None:
    ed = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    response = client.post("/v1/exports", json={"recipient": ed.decode()}, headers=signed_in)
    assert response.status_code == 400 and "X25519" in response.json()["detail"]
    for export_id in ("x" * 5000, "..%2F..", "exp_' OR 1=1 --", "exp_nope"):
        for suffix in ("", "/download"):
            got = client.get(f"/v1/exports/{export_id}{suffix}", headers=signed_in)
            assert 400 <= got.status_code < 500, (export_id, got.text)


# ---- erased events ---------------------------------------------------------------------------


def _exported_objects(
    runtime: Runtime, path: Path
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    report = verified(runtime, path)
    assert report.ok, report.problems
    files = members(path)
    return json.loads(files["manifest.json"])["objects"], files


def _bodies(data: bytes) -> list[str]:
    return sorted(str(b) for b in pq.read_table(io.BytesIO(data)).column("Body").to_pylist())


def export_leaves_out_what_is_masked(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    signed_in: Headers, tmp_path: Path,
) -> None:  # fmt: skip
    """Masked but not yet rewritten: the export writes the object again without those rows."""
    erasure_ingest(client, boot, runtime)
    approve(client, admin, ask(client, owner)["id"])
    assert erase(client, runtime) == 1  # masked; the stored object still holds the event
    state = export(client, signed_in)
    objects, files = _exported_objects(runtime, download(client, signed_in, state["id"],
                                                         tmp_path / "export.tar"))  # fmt: skip
    (obj,) = objects
    assert _bodies(files[obj["path"]]) == ["order 17 shipped", "order 18 shipped"]
    assert obj["as_stored"] is False and obj["rows"] == 2 and obj["erased_rows"] == 1, obj
    assert all(SECRET.encode() not in files[o["path"]] for o in objects)


def test_an_export_after_masking_leaves_the_erased_rows_out_of_the_embedded_bucket(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    signed_in: Headers, tmp_path: Path,
) -> None:  # fmt: skip
    export_leaves_out_what_is_masked(client, runtime, boot, owner, admin, signed_in, tmp_path)


def test_an_export_after_masking_leaves_the_erased_rows_out_of_s3(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    signed_in: Headers, tmp_path: Path, s3_bucket: S3Bucket,
) -> None:  # fmt: skip
    headers = bearer(boot.admin_token)
    activate(client, headers, create_s3(client, headers, s3_bucket)["id"])
    export_leaves_out_what_is_masked(client, runtime, boot, owner, admin, signed_in, tmp_path)


def test_an_export_after_masking_leaves_the_erased_rows_out_of_clickhouse(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    signed_in: Headers, tmp_path: Path, clickhouse: tuple[Client, str],
) -> None:  # fmt: skip
    export_leaves_out_what_is_masked(client, runtime, boot, owner, admin, signed_in, tmp_path)


@pytest.mark.parametrize("settings", [UNFLUSHED], indirect=True)
def test_an_export_waits_for_rows_still_in_the_wal_and_leaves_the_masked_ones_out(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    signed_in: Headers, tmp_path: Path,
) -> None:  # fmt: skip
    erasure_ingest(client, boot, runtime, count=0)  # acknowledged, not flushed
    approve(client, admin, ask(client, owner)["id"])
    assert erase(client, runtime) == 1
    response = client.post("/v1/exports", json={}, headers=signed_in)
    export_id = response.json()["id"]
    time.sleep(0.3)
    waiting = client.get(f"/v1/exports/{export_id}", headers=signed_in).json()
    assert waiting["state"] == "running" and waiting["objects_total"] == 0, waiting
    deadline = time.monotonic() + 20
    while not client.portal.call(runtime.data.flusher.flush_once):  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the WAL segment was not sealed"
        time.sleep(0.1)
    state = export(client, signed_in, wait_for=export_id)
    assert state["objects_total"] == 1
    objects, files = _exported_objects(runtime, download(client, signed_in, export_id,
                                                         tmp_path / "export.tar"))  # fmt: skip
    assert [_bodies(files[o["path"]]) for o in objects] == [["order 17 shipped",
                                                             "order 18 shipped"]]  # fmt: skip
