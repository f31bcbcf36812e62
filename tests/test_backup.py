"""Backups: taken while a gateway ingests and an admin writes, restored into a fresh data dir,
verified, served; damaged archives, tampered logs and occupied data dirs are refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from astralog import backup
from astralog.controlplane.audit_verify import verify
from astralog.controlplane.checkpoints import Signer
from astralog.errors import BadRequest, Conflict
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.gateway import running_gateway, serving


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASTRALOG_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "astralog.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _ingest(url: str, key: str, marker: str, count: int) -> int:
    lines = "".join(
        json.dumps({"message": f"{marker} {i}", "marker": marker}) + "\n" for i in range(count)
    )
    response = httpx.post(
        f"{url}/v1/ingest",
        content=lines.encode(),
        headers=_auth(key) | {"Content-Type": "application/x-ndjson"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return count


def _hits(url: str, token: str, marker: str) -> int:
    response = httpx.post(
        f"{url}/v1/search",
        json={"query": f'"{marker}"', "limit": 1000},
        headers=_auth(token),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return len(response.json()["events"])


class _Busy:
    """An ingesting shipper and an admin making sources, keys and tokens, until stopped."""

    def __init__(self, url: str, ingest_key: str, admin: str) -> None:
        self.url, self.key, self.admin = url, ingest_key, admin
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.sources = 0
        self.events = 0
        self.threads = [threading.Thread(target=self._ship), threading.Thread(target=self._admin)]

    def _ship(self) -> None:
        while not self.stop.is_set():
            try:
                self.events += _ingest(self.url, self.key, f"busy-{self.events}", 50)
            except Exception as exc:  # reported by the test, not lost in a thread
                self.errors.append(repr(exc))

    def _admin(self) -> None:
        while not self.stop.is_set():
            name = f"busy-{self.sources}"
            made = httpx.post(
                f"{self.url}/v1/sources", json={"name": name}, headers=_auth(self.admin)
            )
            if made.status_code != 201:
                self.errors.append(made.text)
                continue
            key = httpx.post(
                f"{self.url}/v1/sources/{made.json()['id']}/keys", headers=_auth(self.admin)
            )
            if key.status_code != 201:
                self.errors.append(key.text)
            self.sources += 1

    def __enter__(self) -> _Busy:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.mark.slow
def test_backup_while_serving_restores_into_a_fresh_data_dir(tmp_path: Path) -> None:
    archive = tmp_path / "backups" / "astralog.tar.gz"
    # The enterprise plan: the admin makes sources faster than pro's limit of 50 allows.
    with running_gateway(tmp_path / "a") as gw:
        op = _auth(gw.operator_token)
        assert (
            httpx.put(
                f"{gw.url}/v1/orgs/{gw.org_id}/plan", json={"plan": "enterprise"}, headers=op
            ).status_code
            == 200
        )
        source = httpx.post(
            f"{gw.url}/v1/sources", json={"name": "kept"}, headers=_auth(gw.admin_token)
        ).json()
        key = httpx.post(
            f"{gw.url}/v1/sources/{source['id']}/keys", headers=_auth(gw.admin_token)
        ).json()["key"]
        token = httpx.post(
            f"{gw.url}/v1/tokens",
            json={"name": "reader", "scopes": ["logs:read", "sources:read"]},
            headers=_auth(gw.admin_token),
        ).json()["token"]
        _ingest(gw.url, key, "before-backup", 40)
        gw.wait_for_rows(40, "LogAttributes['marker'] = 'before-backup'")
        with _Busy(gw.url, gw.ingest_key, gw.admin_token) as busy:
            time.sleep(1.0)
            taken = _cli(gw.data_dir, "backup", "--to", str(archive))
            time.sleep(0.5)
        assert taken.returncode == 0, taken.stderr
        assert not busy.errors, busy.errors[:3]
        assert busy.sources > 0 and busy.events > 0
        # Restoring over a served data dir is refused, even with --force.
        refused = _cli(gw.data_dir, "restore", "--from", str(archive), "--force")
        assert refused.returncode == 2 and "server is running" in refused.stderr
    assert archive.stat().st_mode & 0o777 == 0o600
    manifest = json.loads(taken.stdout[: taken.stdout.rindex("}") + 1])
    assert {f["name"] for f in manifest["files"]} >= {
        "control.sqlite3",
        "catalog.sqlite3",
        "deletion_vectors.sqlite3",
        "idempotency.sqlite3",
        "checkpoint-signing.key",
    }

    fresh = tmp_path / "b" / "data"
    restored = _cli(fresh, "restore", "--from", str(archive))
    assert restored.returncode == 0, restored.stderr
    said = json.loads(restored.stdout)
    assert said["chain"]["head_seq"] == manifest["chain"]["head_seq"]
    assert said["chain"]["verdict"] in ("intact", "unproven")
    key_pem = Signer(fresh / "checkpoint-signing.key").public_pem()
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    report = verify(fresh / "control.sqlite3", load_pem_public_key(key_pem))  # type: ignore[arg-type]
    assert report.verdict != "tampered", report.problems
    # The bucket is restored with file tools; the catalog's paths follow it.
    shutil.copytree(gw.bucket, fresh / "bucket")
    shutil.rmtree(gw.data_dir)  # the old machine is gone

    with serving(fresh, tmp_path / "b" / "gateway.log") as url:
        names = [s["name"] for s in httpx.get(f"{url}/v1/sources", headers=_auth(token)).json()]
        assert "kept" in names and "busy-0" in names
        assert _hits(url, token, "before-backup") == 40
        assert said["catalog_paths_rewritten"] > 0
        _ingest(url, key, "after-restore", 5)
        deadline = time.monotonic() + 15
        while _hits(url, token, "after-restore") < 5:
            assert time.monotonic() < deadline, "events ingested after the restore never showed"
            time.sleep(0.2)


# ---- refusals (no server needed) ------------------------------------------------------------


@pytest.fixture
def archive(runtime: Runtime, boot: Bootstrap, settings: Settings, tmp_path: Path) -> Path:
    runtime.signer.checkpoint(runtime.control.store)
    path = tmp_path / "backup.tar.gz"
    backup.backup(settings, path)
    return path


def _fresh(tmp_path: Path, name: str = "fresh") -> Settings:
    return load_settings(data_dir=tmp_path / name, wal={"fsync": False})


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _repack(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_restore_into_an_empty_dir_says_what_it_restored(archive: Path, tmp_path: Path) -> None:
    done = backup.restore(_fresh(tmp_path), archive)
    assert {r["file"] for r in done["restored"]} >= {"control.sqlite3", "checkpoint-signing.key"}
    assert done["chain"]["verdict"] == "intact" and done["chain"]["head_seq"] > 0
    assert done["skipped_by_backup"][0]["name"] == "sessions.sqlite3"


def test_a_non_empty_data_dir_is_refused_unless_forced(archive: Path, tmp_path: Path) -> None:
    settings = _fresh(tmp_path)
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "sessions.sqlite3").write_bytes(b"old")
    with pytest.raises(Conflict, match=r"not empty.*--force"):
        backup.restore(settings, archive)
    done = backup.restore(settings, archive, force=True)
    assert done["sessions_ended"] == [str(settings.data_dir / "sessions.sqlite3")]


@pytest.mark.parametrize("damage", ["flip", "truncate", "not-gzip"])
def test_a_damaged_archive_is_refused(archive: Path, tmp_path: Path, damage: str) -> None:
    data = bytearray(archive.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        del data[len(data) // 2 :]
    else:
        data = bytearray(b"hello, not a backup")
    archive.write_bytes(bytes(data))
    settings = _fresh(tmp_path)
    with pytest.raises(BadRequest):
        backup.restore(settings, archive)
    assert not (settings.data_dir / "control.sqlite3").exists()


def test_a_file_that_does_not_match_its_manifest_is_refused(archive: Path, tmp_path: Path) -> None:
    members = _members(archive)
    database = bytearray(members["control.sqlite3"])
    database[-1] ^= 0x01
    members["control.sqlite3"] = bytes(database)
    _repack(archive, members)
    with pytest.raises(BadRequest, match="SHA-256"):
        backup.restore(_fresh(tmp_path), archive)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "evil.sqlite3"])
def test_a_manifest_naming_other_files_is_refused(archive: Path, tmp_path: Path, name: str) -> None:
    members = _members(archive)
    manifest = json.loads(members["manifest.json"])
    manifest["files"][0]["name"] = name
    members = {"manifest.json": json.dumps(manifest).encode(), name: members["control.sqlite3"]}
    _repack(archive, members)
    with pytest.raises(BadRequest, match="cannot hold"):
        backup.restore(_fresh(tmp_path), archive)
    assert not (tmp_path / "escape").exists()


def test_a_rewritten_event_log_is_refused(archive: Path, tmp_path: Path) -> None:
    """An archive whose log was edited (and its manifest hashes fixed up) fails the chain."""
    members = _members(archive)
    database = tmp_path / "edited.sqlite3"
    database.write_bytes(members["control.sqlite3"])
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET actor = 'someone-else' WHERE seq = 2")
    members["control.sqlite3"] = database.read_bytes()
    manifest = json.loads(members["manifest.json"])
    for entry in manifest["files"]:
        entry["sha256"] = hashlib.sha256(members[entry["name"]]).hexdigest()
        entry["bytes"] = len(members[entry["name"]])
    members["manifest.json"] = json.dumps(manifest).encode()
    _repack(archive, members)
    settings = _fresh(tmp_path)
    with pytest.raises(BadRequest, match="does not verify"):
        backup.restore(settings, archive)
    assert not (settings.data_dir / "control.sqlite3").exists()


def test_cli_refusals_are_one_line(archive: Path, tmp_path: Path) -> None:
    missing = _cli(tmp_path / "fresh", "restore", "--from", str(tmp_path / "nope.tar.gz"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: no backup at")
    empty = _cli(tmp_path / "empty", "backup", "--to", str(tmp_path / "x.tar.gz"))
    assert empty.returncode == 2 and "nothing to back up" in empty.stderr
    assert not (tmp_path / "empty").exists()
