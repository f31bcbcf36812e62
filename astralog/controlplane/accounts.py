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
import time
from typing import Any

from astralog.auth import passwords, totp
from astralog.auth.throttle import SignInThrottle
from astralog.controlplane.people import normalise_email
from astralog.controlplane.secret_tables import SecretTables
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Conflict, Forbidden
from astralog.security.fieldcrypt import FieldCipher, SealedRecord

INVITATION_SECONDS = 7 * 24 * 3600
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off paper
_RECOVERY_LENGTH = 24  # 24 * log2(31) ≈ 119 bits: at 112+ bits a plain SHA-256 suffices
ACCOUNTS = Actor("system:accounts", "local")
FACTOR_FAILURES = 10  # wrong second factors in a row (whatever the address) before a lock
FACTOR_LOCK_SECONDS = 15 * 60  # the first lock; each further FACTOR_FAILURES doubles it
FACTOR_LOCK_MAX = 24 * 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS account_passwords (
    person_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, phc TEXT NOT NULL, changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS account_invitations (
    digest TEXT PRIMARY KEY, org_id TEXT NOT NULL, person_id TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS account_totp (
    person_id TEXT PRIMARY KEY, org_id TEXT NOT NULL, sealed TEXT, pending TEXT,
    last_step INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS account_recovery_codes (
    digest TEXT PRIMARY KEY, person_id TEXT NOT NULL, used_at REAL
);
CREATE INDEX IF NOT EXISTS account_recovery_person ON account_recovery_codes (person_id);
CREATE TABLE IF NOT EXISTS account_factor_failures (
    person_id TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until REAL NOT NULL
);
"""


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def invitation_digest(token: str) -> str:
    """What an invitation is stored and looked up by: the token itself is never kept."""
    return _sha256(token)


class Accounts(SecretTables):
    """``runtime.accounts``: what a local sign-in needs besides the person's projection row."""

    def __init__(self, control: ControlPlane, cipher: FieldCipher) -> None:
        super().__init__(control, SCHEMA)
        self.cipher = cipher
        self.throttle = SignInThrottle()

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
        org_id, person_id = self.peek_invitation(token)
        phc = self._checked_hash(org_id, person_id, password)
        with self._tx() as conn:  # spent and set together: a concurrent acceptance sets nothing
            self._spend(conn, token)
            self._store_password(conn, org_id, person_id, phc)
        self.control.people.note_credential(org_id, person_id, "password", ACCOUNTS)
        return org_id, person_id

    def peek_invitation(self, token: str) -> tuple[str, str]:
        """(org_id, person_id) of a live invitation, leaving it usable: a step that may still
        fail (a password refused, an SSO sign-in abandoned) must not spend it."""
        return self.peek_invitation_digest(invitation_digest(token))

    def peek_invitation_digest(self, digest: str) -> tuple[str, str]:
        """``peek_invitation`` by the token's digest (what an SSO attempt keeps meanwhile)."""
        with self.control.store.reading() as conn:
            row = conn.execute(
                "SELECT org_id, person_id FROM account_invitations "
                "WHERE digest = ? AND expires > ?",
                (digest, time.time()),
            ).fetchone()
        if row is None:
            raise Forbidden(
                "this invitation is unknown, used or expired; ask an org admin for a new one",
                code="invitation_invalid",
            )
        return str(row[0]), str(row[1])

    def use_invitation(self, token: str) -> None:
        self.use_invitation_digest(invitation_digest(token))

    def use_invitation_digest(self, digest: str) -> None:
        """Spend the invitation; of two concurrent acceptances exactly one gets here."""
        with self._tx() as conn:
            self._spend_digest(conn, digest)

    def end_invitations(self, person_id: str) -> int:
        """End the person's open invitations: a link issued for one role must not sign anyone
        in with another (the one who changed the role issues a fresh link)."""
        with self._tx() as conn:
            return int(
                conn.execute(
                    "DELETE FROM account_invitations WHERE person_id = ?", (person_id,)
                ).rowcount
            )

    @classmethod
    def _spend(cls, conn: Any, token: str) -> None:
        cls._spend_digest(conn, invitation_digest(token))

    @staticmethod
    def _spend_digest(conn: Any, digest: str) -> None:
        deleted = conn.execute(
            "DELETE FROM account_invitations WHERE digest = ? AND expires > ?",
            (digest, time.time()),
        ).rowcount
        if not deleted:  # accepted concurrently: the other acceptance won
            raise Conflict("this invitation was used at the same moment; sign in instead")

    # ---- passwords -------------------------------------------------------------------------

    def set_password(
        self, org_id: str, person_id: str, password: str, actor: Actor = ACCOUNTS
    ) -> None:
        """Check the rules, store the Argon2id hash, and record that the password changed."""
        phc = self._checked_hash(org_id, person_id, password)
        with self._tx() as conn:
            self._store_password(conn, org_id, person_id, phc)
        self.control.people.note_credential(org_id, person_id, "password", actor)

    def _checked_hash(self, org_id: str, person_id: str, password: str) -> str:
        person = self.control.people.get(org_id, person_id)
        if person["kind"] != "person" or person["state"] != "active":
            raise Forbidden("only an active person can have a password")
        org_name = str(self.control.org(org_id)["name"])
        passwords.check(password, email=person["email"], org_name=org_name)
        return passwords.hash_password(password)  # slow: outside the store's lock

    @staticmethod
    def _store_password(conn: Any, org_id: str, person_id: str, phc: str) -> None:
        conn.execute(
            "INSERT INTO account_passwords VALUES (?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE"
            " SET org_id = excluded.org_id, phc = excluded.phc, changed_at = excluded.changed_at",
            (person_id, org_id, phc, time.time()),
        )

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

    # ---- TOTP --------------------------------------------------------------------------------

    def begin_totp(self, org_id: str, person_id: str) -> str:
        """A new seed, pending until a code from it is confirmed (a set-up TOTP stays in force
        until then). Returns the base32 secret for the authenticator app."""
        secret = totp.new_secret()
        sealed = self.cipher.seal_record(org_id, person_id, {"totp_seed": secret}).to_json()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO account_totp (person_id, org_id, pending) VALUES (?, ?, ?) "
                "ON CONFLICT (person_id) DO UPDATE SET pending = excluded.pending",
                (person_id, org_id, sealed),
            )
        return secret

    def confirm_totp(self, org_id: str, person_id: str, code: str) -> list[str]:
        """Make the pending seed the person's TOTP once ``code`` proves the app has it; returns
        ten new recovery codes (shown once)."""
        row = self._totp_row(person_id)
        if row is None or row["pending"] is None:
            raise Conflict("no TOTP set-up is pending: POST /v1/me/totp first")
        step = totp.match(self._open(org_id, person_id, row["pending"]), code)
        if step is None:
            raise BadRequest(
                "that code does not match: check the device's clock and enter the current code",
                code="totp_invalid",
            )
        with self._tx() as conn:
            conn.execute(
                "UPDATE account_totp SET sealed = pending, pending = NULL, last_step = ? "
                "WHERE person_id = ?",
                (step, person_id),
            )
        self.control.people.note_credential(org_id, person_id, "totp_enrolled", ACCOUNTS)
        return self.new_recovery_codes(org_id, person_id)

    def has_totp(self, person_id: str) -> bool:
        row = self._totp_row(person_id)
        return row is not None and row["sealed"] is not None

    def check_totp(self, org_id: str, person_id: str, code: str) -> bool:
        """Whether ``code`` is the person's current TOTP code and its time step is newer than
        the last one accepted: a code seen once (sign-in, re-auth) never works again."""
        row = self._totp_row(person_id)
        if row is None or row["sealed"] is None:
            return False
        step = totp.match(self._open(org_id, person_id, row["sealed"]), code)
        if step is None:
            return False
        with self._tx() as conn:  # compare-and-set: two requests with one code, one wins
            used = conn.execute(
                "UPDATE account_totp SET last_step = ? WHERE person_id = ? AND last_step < ?",
                (step, person_id, step),
            ).rowcount
        return bool(used)

    def remove_totp(self, org_id: str, person_id: str, actor: Actor = ACCOUNTS) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM account_totp WHERE person_id = ?", (person_id,))
            conn.execute("DELETE FROM account_recovery_codes WHERE person_id = ?", (person_id,))
        self.control.people.note_credential(org_id, person_id, "totp_removed", actor)

    # ---- recovery codes ----------------------------------------------------------------------

    def new_recovery_codes(self, org_id: str, person_id: str) -> list[str]:
        """Ten fresh single-use codes; earlier ones stop working."""
        if not self.has_totp(person_id):
            raise Conflict("recovery codes back up a TOTP authenticator: set one up first")
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        with self._tx() as conn:
            conn.execute("DELETE FROM account_recovery_codes WHERE person_id = ?", (person_id,))
            conn.executemany(
                "INSERT INTO account_recovery_codes VALUES (?, ?, NULL)",
                [(_sha256(_plain_code(c)), person_id) for c in codes],
            )
        self.control.people.note_credential(org_id, person_id, "recovery_codes_issued", ACCOUNTS)
        return codes

    def use_recovery_code(self, org_id: str, person_id: str, code: str) -> bool:
        with self._tx() as conn:
            used = conn.execute(
                "UPDATE account_recovery_codes SET used_at = ? "
                "WHERE digest = ? AND person_id = ? AND used_at IS NULL",
                (time.time(), _sha256(_plain_code(code)), person_id),
            ).rowcount
        if used:
            self.control.people.note_credential(org_id, person_id, "recovery_code_used", ACCOUNTS)
        return bool(used)

    def recovery_codes_left(self, person_id: str) -> int:
        with self.control.store.reading() as conn:
            (left,) = conn.execute(
                "SELECT COUNT(*) FROM account_recovery_codes "
                "WHERE person_id = ? AND used_at IS NULL",
                (person_id,),
            ).fetchone()
        return int(left)

    # ---- second-factor failures ------------------------------------------------------------

    def factor_locked(self, person_id: str) -> int:
        """Seconds until the person's second factors may be tried again (0: now)."""
        with self.control.store.reading() as conn:
            row = conn.execute(
                "SELECT locked_until FROM account_factor_failures WHERE person_id = ?",
                (person_id,),
            ).fetchone()
        left = 0.0 if row is None else float(row[0]) - time.time()
        return max(0, int(left + 0.999))

    def factor_failed(self, person_id: str) -> int:
        """Count one more wrong second factor. Every ``FACTOR_FAILURES`` in a row (from any
        address: the throttle's per-address counts let a patient guesser through) lock the
        person's second factors, each lock twice the last; returns the new lock's seconds or 0."""
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO account_factor_failures VALUES (?, 1, 0) ON CONFLICT (person_id) "
                "DO UPDATE SET failures = account_factor_failures.failures + 1 RETURNING failures",
                (person_id,),
            ).fetchone()
            failures = int(row[0])
            if failures % FACTOR_FAILURES:
                return 0
            doublings = min(failures // FACTOR_FAILURES - 1, 16)
            lock = min(FACTOR_LOCK_SECONDS << doublings, FACTOR_LOCK_MAX)
            conn.execute(
                "UPDATE account_factor_failures SET locked_until = ? WHERE person_id = ?",
                (time.time() + lock, person_id),
            )
        return lock

    def factor_succeeded(self, person_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM account_factor_failures WHERE person_id = ?", (person_id,))

    def _totp_row(self, person_id: str) -> dict[str, Any] | None:
        with self.control.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM account_totp WHERE person_id = ?", (person_id,)
            ).fetchone()
        return None if row is None else dict(row)

    def _open(self, org_id: str, person_id: str, sealed: str) -> str:
        return self.cipher.open_field(
            org_id, person_id, SealedRecord.from_json(sealed), "totp_seed"
        )


def _recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4))


def _plain_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())
