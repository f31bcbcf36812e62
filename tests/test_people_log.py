"""People in the event log: their projections rebuild identically, an older projection shape is
rebuilt on open, token use is audited once per hour, and secrets never enter the log."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from astralog.auth import totp
from astralog.controlplane import events as ev
from astralog.controlplane import projections
from astralog.controlplane.people import Policy
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Conflict
from astralog.runtime import Bootstrap, Runtime

ACTOR = Actor("test:alice", "127.0.0.1")


def _people(runtime: Runtime, boot: Bootstrap) -> dict[str, str]:
    org = str(boot.org["id"])
    people = runtime.control.people
    owner = people.add(org, "Owner@Example.COM", "Olive", "owner", None, ACTOR)
    member = people.add(org, "m@example.com", "Mo", "member", [boot.source["id"]], ACTOR)
    svc = people.add(org, "ci", "CI", "ingest", [boot.source["id"]], ACTOR, kind="service")
    people.set_role(org, member["id"], "viewer", None, ACTOR)
    people.note_credential(org, member["id"], "totp_enrolled", ACTOR)
    people.set_policy(org, Policy(require_mfa=True, session_idle_minutes=15), ACTOR)
    people.verify_domain(org, "Example.com.", ACTOR)
    store = runtime.control.store
    with store.transaction():
        link = ev.IdentityLinked("idp_1", org, "https://idp.test", "sub-1", member["id"])
        store.append(link, ACTOR, 0)
    people.deprovision(org, svc["id"], ACTOR)
    return {"org": org, "owner": owner["id"], "member": member["id"], "svc": svc["id"]}


def test_people_projections_rebuild_identically(runtime: Runtime, boot: Bootstrap) -> None:
    ids = _people(runtime, boot)
    live = projections.dump(runtime.control.store.conn)
    assert len(live["people"]) == 3 and live["identities"] and live["domains"]
    runtime.control.rebuild()
    assert projections.dump(runtime.control.store.conn) == live
    member = runtime.control.people.get(ids["org"], ids["member"])
    assert (member["role"], member["sources"], member["mfa"]) == ("viewer", None, True)
    owner = runtime.control.people.get(ids["org"], ids["owner"])
    assert owner["email"] == "Owner@example.com"  # the domain folds, the local part does not
    assert runtime.control.people.domains(ids["org"]) == ["example.com"]
    assert runtime.control.people.policy(ids["org"]).session_idle_minutes == 15


def test_grants_are_checked(runtime: Runtime, boot: Bootstrap) -> None:
    org, people = str(boot.org["id"]), runtime.control.people
    with pytest.raises(BadRequest, match="covers every source"):
        people.add(org, "a@example.com", "A", "admin", [boot.source["id"]], ACTOR)
    with pytest.raises(BadRequest, match="unknown sources"):
        people.add(org, "a@example.com", "A", "member", ["src_elsewhere"], ACTOR)
    with pytest.raises(BadRequest, match="service accounts only"):
        people.add(org, "a@example.com", "A", "ingest", None, ACTOR)
    with pytest.raises(BadRequest, match="unknown role"):
        people.add(org, "a@example.com", "A", "root", None, ACTOR)
    only = people.add(org, "o@example.com", "O", "owner", None, ACTOR)
    with pytest.raises(Conflict, match="at least one owner"):
        people.set_role(org, only["id"], "member", None, ACTOR)
    with pytest.raises(Conflict, match="already a member"):
        people.add(org, "o@EXAMPLE.com", "O", "viewer", None, ACTOR)


def test_an_older_projection_shape_is_rebuilt_on_open(tmp_path: Path) -> None:
    database = tmp_path / "control.sqlite3"
    control = ControlPlane(database, "pepper")
    control.define_default_plans(ACTOR)
    org = control.create_org("acme", "pro", ACTOR)
    control.issue_token(org["id"], "reader", ["logs:read"], ACTOR)
    control.close()
    with sqlite3.connect(database) as conn:  # the tokens table as it was before people
        conn.execute("DROP TABLE tokens")
        conn.execute(
            "CREATE TABLE tokens (id TEXT PRIMARY KEY, org_id TEXT, name TEXT NOT NULL, "
            "kind TEXT NOT NULL, scopes TEXT NOT NULL, digest TEXT NOT NULL, "
            "created_at TEXT NOT NULL, revoked_at TEXT)"
        )
        conn.execute("PRAGMA user_version = 1")
    reopened = ControlPlane(database, "pepper")
    try:
        [token] = reopened.tokens(org["id"])
        assert token["name"] == "reader" and token["person_id"] is None
    finally:
        reopened.close()


def test_token_use_is_audited_once_per_hour(runtime: Runtime, boot: Bootstrap) -> None:
    control = runtime.control
    for _ in range(3):
        control.authenticate(boot.admin_token)
        control.authenticate(boot.ingest_key)
        control.record_usage()
    used = [r for r in control.store.records() if r.type == "TokenUsed"]
    assert len(used) == 1
    assert json.loads(used[0].payload)["token_id"] == boot.admin_token.split("_")[1]


def test_secrets_never_enter_the_log(runtime: Runtime, boot: Bootstrap) -> None:
    """The facts of credential changes are in the log; the password, its hash, the TOTP seed and
    the recovery codes are not (set for real here, so the test can fail)."""
    ids = _people(runtime, boot)
    org, owner, accounts = ids["org"], ids["owner"], runtime.accounts
    password = "a long passphrase of my own"
    accounts.set_password(org, owner, password)
    seed = accounts.begin_totp(org, owner)
    codes = accounts.confirm_totp(org, owner, totp.code_at(seed, time.time()))
    with runtime.control.store.reading() as conn:
        (phc,) = conn.execute(
            "SELECT phc FROM account_passwords WHERE person_id = ?", (owner,)
        ).fetchone()
    text = "\n".join(r.payload for r in runtime.control.store.records())
    assert '"what":"password"' in text and "totp_enrolled" in text
    for secret in (password, phc, seed, *codes):
        assert secret not in text
