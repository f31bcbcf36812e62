"""The break-glass owner end to end in real processes: the operator creates it with the
``astralog break-glass`` command beside a running gateway, SSO is then enforced, and the owner
still signs in with a password over HTTP, audited with break_glass=True."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from astralog.controlplane.people import Policy
from astralog.controlplane.service import ControlPlane
from astralog.runtime import SYSTEM
from astralog.settings import load_settings
from tests.conftest import bearer
from tests.gateway import running_gateway

PASSWORD = "correct horse battery"


def _cli(data_dir: Path, *argv: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASTRALOG_DATA_DIR": str(data_dir), "ASTRALOG_WAL__FSYNC": "false"}
    return subprocess.run(
        [sys.executable, "-m", "astralog.cli", *argv],
        input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def _enforce_sso(data_dir: Path, org_id: str) -> None:
    """As the operator would through the API once SSO was tested; here on the shared file."""
    settings = load_settings(data_dir=data_dir)
    control = ControlPlane(settings.path(settings.control.database), settings.auth.key_pepper)
    try:
        control.people.set_policy(org_id, Policy(enforce_sso=True), SYSTEM)
    finally:
        control.close()


def _cookie(response: httpx.Response, name: str) -> str:
    """The cookie as a browser stores it: httpx keeps no Secure cookie for an http:// URL,
    though browsers treat loopback as secure, so it is read from the header here."""
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(name + "=")]
    assert "Secure" in header and "HttpOnly" in header and "Path=/" in header
    return header.split(";")[0]


@pytest.mark.slow
def test_break_glass_owner_signs_in_when_sso_is_enforced(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gw:
        args = ("break-glass", "--org", "demo", "--email", "glass@example.com", "--password-stdin")
        weak = _cli(gw.data_dir, *args, stdin="password1\n")
        assert weak.returncode == 2 and "Traceback" not in weak.stderr and "common" in weak.stderr
        made = _cli(gw.data_dir, *args, stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        assert '"break_glass": true' in made.stdout
        _enforce_sso(gw.data_dir, gw.org_id)
        body = {"org": "demo", "email": "glass@example.com", "password": PASSWORD}
        with httpx.Client(base_url=gw.url, timeout=10) as http:
            signed = http.post("/v1/auth/password", json=body)
            assert signed.status_code == 200, signed.text
            assert signed.json()["break_glass"] is True
            cookie = _cookie(signed, "__Host-astralog_session")
            me = http.get("/v1/me", headers={"Cookie": cookie})
            assert me.status_code == 200 and me.json()["role"] == "owner"
            audit = http.get("/v1/audit?limit=1000", headers=bearer(gw.admin_token)).json()
        signed_in = [e for e in audit["events"] if e["type"] == "SignedIn"]
        assert signed_in[-1]["payload"]["break_glass"] is True
