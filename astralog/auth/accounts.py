"""Local-account secrets: passwords, invitations, TOTP seeds and recovery codes.

These live in their own tables of the control-plane SQLite file, never in the event log or the
projections (a log is copied, exported and verified by others; a password hash or a TOTP seed
must not travel with it). What changed is still on the record: each change appends a
``PersonCredentialChanged`` fact through ``people.note_credential``.

Invitation tokens and recovery codes are high-entropy random values, so a SHA-256 of them is
enough at rest; passwords get Argon2id (:mod:`astralog.auth.passwords`). TOTP seeds must be
read back, so they are sealed with the runtime's field cipher, bound to the person.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from astralog.auth import passwords
from astralog.controlplane.people import normalise_email
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Conflict, Forbidden
from astralog.security.fieldcrypt import FieldCipher

INVITATION_SECONDS = 7 * 24 * 3600
ACCOUNTS = Actor("system:accounts", "local")

SCHEMA = """
CREATE TABLE IF NOT EXISTS account_passwords (
    person_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, phc TEXT NOT NULL, changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS account_invitations (
    digest TEXT PRIMARY KEY, org_id TEXT NOT NULL, person_id TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS account_totp (
    person_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, sealed TEXT NOT NULL,
    confirmed INTEGER NOT NULL, last_step INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS account_recovery_codes (
    digest TEXT PRIMARY KEY, person_id TEXT NOT NULL, used_at REAL
);
CREATE INDEX IF NOT EXISTS account_recovery_person ON account_recovery_codes (person_id);
"""


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Accounts:
    """``runtime.accounts``: what a local sign-in needs besides the person's projection row."""

    def __init__(self, control: ControlPlane, cipher: FieldCipher) -> None:
        self.control = control
        self.cipher = cipher
        with control.store.transaction() as conn:
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.control.store.transaction() as conn:
            yield conn

    # ---- invitations -----------------------------------------------------------------------

    def create_invitation(self, org_id: str, person_id: str) -> str:
        """A one-time token (7 days) for the person to choose a password; earlier ones end."""
        person = self.control.people.get(org_id, person_id)
        if person["kind"] != "person" or person["state"] != "active":
            raise BadRequest("only an active person (not a service account) can be invited")
        token = "inv_" + secrets.token_urlsafe(32)
        with self._tx() as conn:
            conn.execute("DELETE FROM account_invitations WHERE person_id = ?", (person_id,))
            conn.execute(
                "INSERT INTO account_invitations VALUES (?, ?, ?, ?)",
                (_sha256(token), org_id, person_id, time.time() + INVITATION_SECONDS),
            )
        return token

    def accept_invitation(self, token: str, password: str) -> tuple[str, str]:
        """Set the invited person's password; the token works once. Returns (org_id, person_id)."""
        with self.control.store.reading() as conn:
            row = conn.execute(
                "SELECT org_id, person_id FROM account_invitations "
                "WHERE digest = ? AND expires > ?",
                (_sha256(token), time.time()),
            ).fetchone()
        if row is None:
            raise Forbidden(
                "this invitation is unknown, used or expired; ask an org admin for a new one",
                code="invitation_invalid",
            )
        org_id, person_id = str(row[0]), str(row[1])
        self.set_password(org_id, person_id, password)
        with self._tx() as conn:
            deleted = conn.execute(
                "DELETE FROM account_invitations WHERE digest = ?", (_sha256(token),)
            ).rowcount
        if not deleted:  # accepted concurrently: the other acceptance won
            raise Conflict("this invitation was used at the same moment; sign in instead")
        return org_id, person_id

    # ---- passwords -------------------------------------------------------------------------

    def set_password(
        self, org_id: str, person_id: str, password: str, actor: Actor = ACCOUNTS
    ) -> None:
        """Check the rules, store the Argon2id hash, and record that the password changed."""
        person = self.control.people.get(org_id, person_id)
        if person["kind"] != "person" or person["state"] != "active":
            raise Forbidden("only an active person can have a password")
        org_name = str(self.control.org(org_id)["name"])
        passwords.check(password, email=person["email"], org_name=org_name)
        phc = passwords.hash_password(password)  # slow: outside the store's lock
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO account_passwords VALUES (?, ?, ?, ?)",
                (person_id, org_id, phc, time.time()),
            )
        self.control.people.note_credential(org_id, person_id, "password", actor)

    def has_password(self, person_id: str) -> bool:
        return self._phc(person_id) is not None

    def verify_password(self, org_id: str, email: str, password: str) -> dict[str, Any] | None:
        """The active person with this email and password, else None. An unknown email, a
        service account or an account without a password costs one Argon2id verify all the
        same, so the answer's timing does not tell whether the account exists."""
        person = self._person(org_id, email)
        phc = self._phc(person["id"]) if person is not None else None
        if person is None or phc is None or len(password) > passwords.MAX_LENGTH * 4:
            passwords.verify(password, passwords.decoy())
            return None
        if not passwords.verify(password, phc):
            return None
        if passwords.needs_rehash(phc):
            self._rehash(person["id"], org_id, password)
        return person if person["state"] == "active" else None

    def check_password(self, person_id: str, password: str) -> bool:
        """Re-authentication of someone already signed in (their id, not an email)."""
        phc = self._phc(person_id)
        return passwords.verify(password, phc or passwords.decoy()) and phc is not None

    def _person(self, org_id: str, email: str) -> dict[str, Any] | None:
        try:
            address = normalise_email(email)
        except BadRequest:
            return None
        person = self.control.people.by_email(org_id, address)
        return person if person is not None and person["kind"] == "person" else None

    def _phc(self, person_id: str) -> str | None:
        with self.control.store.reading() as conn:
            row = conn.execute(
                "SELECT phc FROM account_passwords WHERE person_id = ?", (person_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def _rehash(self, person_id: str, org_id: str, password: str) -> None:
        phc = passwords.hash_password(password)
        with self._tx() as conn:
            conn.execute(
                "UPDATE account_passwords SET phc = ? WHERE person_id = ?", (phc, person_id)
            )
