"""WebAuthn passkeys as a second factor of local accounts (beside TOTP), with ``webauthn``
(py_webauthn) building the ceremony options and verifying what the authenticator returns:
origin, RP id hash, challenge, user presence, the signature and the sign count.

The relying party is the service's public URL (``server.public_url``): its origin is the one
origin a browser may sign in from, its host the RP id. A credential belongs to one person of
one org: its id is unique across the service, so no one can register another person's
authenticator as theirs, and an assertion is looked up by (credential id, person, org).

Each ceremony's challenge is kept server-side in ``runtime.sessions``' pre-auth store, bound to
the session that asked for it and to its purpose (one live ceremony per session and purpose:
new options replace the earlier ones), taken exactly once and refused after
``CHALLENGE_SECONDS``: a replayed response finds nothing. Public keys, sign counts and names
live in the accounts tables of the control-plane file, never in the event log; the log gets
``PersonCredentialChanged`` facts (passkey_added, passkey_removed).
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import webauthn
from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from astralog.auth.sessions import SessionStore
from astralog.controlplane.secret_tables import SecretTables
from astralog.controlplane.service import ControlPlane
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Conflict, NotFound, Unauthenticated
from astralog.ids import new_id

CHALLENGE_SECONDS = 300
MAX_PASSKEYS = 20
PASSKEYS = Actor("system:passkeys", "local")
_TRANSPORTS = {t.value for t in AuthenticatorTransport}

SCHEMA = """
CREATE TABLE IF NOT EXISTS account_passkeys (
    id TEXT PRIMARY KEY, credential_id TEXT NOT NULL UNIQUE, org_id TEXT NOT NULL,
    person_id TEXT NOT NULL, name TEXT NOT NULL, public_key BLOB NOT NULL,
    sign_count INTEGER NOT NULL, transports TEXT NOT NULL, created_at REAL NOT NULL,
    last_used_at REAL
);
CREATE INDEX IF NOT EXISTS account_passkeys_person ON account_passkeys (person_id);
"""


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the RP id (a host name) and the one origin accepted."""

    id: str
    origin: str
    name: str = "Astralog"

    @classmethod
    def from_url(cls, url: str) -> RelyingParty:
        parts = urlsplit(url)
        return cls(id=(parts.hostname or "").lower(), origin=f"{parts.scheme}://{parts.netloc}")

    def check(self) -> None:
        """Browsers offer WebAuthn only in a secure context and never for an IP address."""
        try:
            ipaddress.ip_address(self.id.strip("[]"))
        except ValueError:
            pass
        else:
            raise Conflict(_RP_HELP.format(why=f"the public URL's host {self.id} is an address"))
        if self.origin.startswith("http://") and self.id != "localhost":
            raise Conflict(_RP_HELP.format(why="the public URL is plain http"))


_RP_HELP = (
    "passkeys cannot be used here: {why}; browsers offer passkeys over https (or on "
    "http://localhost), for a host name: set server.public_url to the URL people open"
)


class Passkeys(SecretTables):
    """``runtime.passkeys``: register, list, remove and check a person's passkeys."""

    def __init__(self, control: ControlPlane, sessions: SessionStore, public_url: str) -> None:
        super().__init__(control, SCHEMA)
        self.sessions = sessions
        self.rp = RelyingParty.from_url(public_url)

    # ---- registration ----------------------------------------------------------------------

    def registration_options(self, org_id: str, person_id: str, session: str) -> dict[str, Any]:
        """The options for ``navigator.credentials.create`` and the ceremony id to send back."""
        self.rp.check()
        person = self.control.people.get(org_id, person_id)
        if len(self._rows(person_id)) >= MAX_PASSKEYS:
            raise Conflict(f"at most {MAX_PASSKEYS} passkeys per person: remove one first")
        options = webauthn.generate_registration_options(
            rp_id=self.rp.id,
            rp_name=self.rp.name,
            user_name=person["email"],
            user_id=person_id.encode(),  # opaque, no personal data; checked on assertions
            user_display_name=person["name"] or person["email"],
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=self._descriptors(person_id),
            timeout=CHALLENGE_SECONDS * 1000,
        )
        return self._ceremony("register", org_id, person_id, session, options)

    def register(
        self,
        org_id: str,
        person_id: str,
        session: str,
        ceremony: str,
        credential: dict[str, Any],
        name: str,
    ) -> dict[str, Any]:
        """Verify the authenticator's answer to the options and keep the new passkey."""
        challenge = self._take(ceremony, "register", org_id, person_id, session)
        try:
            verified = webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
            )
        except Exception as exc:  # hostile input reaches CBOR, COSE and X.509 parsers: all 400
            raise BadRequest(f"the passkey was not accepted: {_reason(exc)}",
                             code="passkey_invalid") from exc  # fmt: skip
        row = {
            "id": new_id("pky"),
            "credential_id": bytes_to_base64url(verified.credential_id),
            "org_id": org_id,
            "person_id": person_id,
            "name": name.strip() or f"Passkey {len(self._rows(person_id)) + 1}",
            "public_key": verified.credential_public_key,
            "sign_count": verified.sign_count,
            "transports": json.dumps(_transports(credential)),
            "created_at": time.time(),
        }
        self._insert(row)
        self.control.people.note_credential(org_id, person_id, "passkey_added", PASSKEYS)
        return _view(row)

    def _insert(self, row: dict[str, Any]) -> None:
        columns, marks = ", ".join(row), ", ".join("?" * len(row))  # our own keys, not input
        try:
            with self._tx() as conn:
                conn.execute(
                    f"INSERT INTO account_passkeys ({columns}) VALUES ({marks})",
                    tuple(row.values()),
                )
        except sqlite3.IntegrityError as exc:  # the credential id is someone's already
            raise Conflict(
                "this authenticator's credential is already registered; use another passkey"
            ) from exc

    # ---- authentication --------------------------------------------------------------------

    def authentication_options(self, org_id: str, person_id: str, session: str) -> dict[str, Any]:
        """Options for ``navigator.credentials.get`` naming the person's own passkeys only."""
        self.rp.check()
        allowed = self._descriptors(person_id)
        if not allowed:
            raise Conflict("you have no passkey: use your authenticator app's code instead")
        options = webauthn.generate_authentication_options(
            rp_id=self.rp.id,
            allow_credentials=allowed,
            user_verification=UserVerificationRequirement.PREFERRED,
            timeout=CHALLENGE_SECONDS * 1000,
        )
        return self._ceremony("authenticate", org_id, person_id, session, options)

    def refusal(
        self, org_id: str, person_id: str, session: str, ceremony: str, credential: dict[str, Any]
    ) -> str | None:
        """Why ``credential`` is refused as this person's second factor, None when it passes:
        it must answer this session's challenge, be signed by one of their passkeys for our
        origin and RP id, and carry a sign count above the last one seen."""
        try:
            self._verify(org_id, person_id, session, ceremony, credential)
        except (BadRequest, Unauthenticated) as exc:
            return exc.detail
        return None

    def _verify(
        self, org_id: str, person_id: str, session: str, ceremony: str, credential: dict[str, Any]
    ) -> None:
        challenge = self._take(ceremony, "authenticate", org_id, person_id, session)
        try:
            parsed = parse_authentication_credential_json(credential)
        except Exception as exc:  # malformed structure or base64: the same refusal
            raise BadRequest(f"the passkey answer is malformed: {_reason(exc)}") from exc
        row = self._own(org_id, person_id, parsed)
        try:
            verified = webauthn.verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                credential_public_key=row["public_key"],
                credential_current_sign_count=row["sign_count"],
            )
        except Exception as exc:  # hostile input reaches COSE and signature parsing: refused
            raise Unauthenticated(f"the passkey was refused: {_reason(exc)}") from exc
        self._used(row, verified.new_sign_count)

    def _own(self, org_id: str, person_id: str, parsed: AuthenticationCredential) -> dict[str, Any]:
        """The stored passkey the answer names, only when it is this person's in this org."""
        handle = parsed.response.user_handle
        with self.control.store.reading() as conn:
            row = conn.execute(
                "SELECT * FROM account_passkeys WHERE credential_id = ? AND person_id = ? "
                "AND org_id = ?",
                (bytes_to_base64url(parsed.raw_id), person_id, org_id),
            ).fetchone()
        if row is None or (handle and handle != person_id.encode()):
            raise Unauthenticated("that passkey is not one of yours")
        return dict(row)

    def _used(self, row: dict[str, Any], count: int) -> None:
        """Compare-and-set the sign count, so two answers with one count cannot both pass
        (the library refused a count at or below the stored one; this closes the race)."""
        with self._tx() as conn:
            updated = conn.execute(
                "UPDATE account_passkeys SET sign_count = ?, last_used_at = ? "
                "WHERE id = ? AND (sign_count < ? OR (sign_count = 0 AND ? = 0))",
                (count, time.time(), row["id"], count, count),
            ).rowcount
        if not updated:
            raise Unauthenticated("the passkey's sign count did not increase")

    # ---- the person's passkeys -------------------------------------------------------------

    def mine(self, person_id: str) -> list[dict[str, Any]]:
        """The person's passkeys as they see them (no key material)."""
        return [_view(r) for r in self._rows(person_id)]

    def count(self, person_id: str) -> int:
        return len(self._rows(person_id))

    def remove(self, org_id: str, person_id: str, passkey_id: str, actor: Actor) -> None:
        with self._tx() as conn:
            removed = conn.execute(
                "DELETE FROM account_passkeys WHERE id = ? AND person_id = ? AND org_id = ?",
                (passkey_id, person_id, org_id),
            ).rowcount
        if not removed:
            raise NotFound(f"no passkey {passkey_id[:40]!r} of yours exists")
        self.control.people.note_credential(org_id, person_id, "passkey_removed", actor)

    def _rows(self, person_id: str) -> list[dict[str, Any]]:
        with self.control.store.reading() as conn:
            rows = conn.execute(
                "SELECT * FROM account_passkeys WHERE person_id = ? ORDER BY created_at",
                (person_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def _descriptors(self, person_id: str) -> list[PublicKeyCredentialDescriptor]:
        return [
            PublicKeyCredentialDescriptor(
                id=webauthn.base64url_to_bytes(r["credential_id"]),
                transports=[AuthenticatorTransport(t) for t in json.loads(r["transports"])],
            )
            for r in self._rows(person_id)
        ]

    # ---- challenges --------------------------------------------------------------------------

    def _ceremony(
        self, purpose: str, org_id: str, person_id: str, session: str, options: Any
    ) -> dict[str, Any]:
        state = {
            "purpose": f"passkey:{purpose}",
            "org_id": org_id,
            "person_id": person_id,
            "session": session,
            "challenge": bytes_to_base64url(options.challenge),
            "expires": time.time() + CHALLENGE_SECONDS,
        }
        # One live ceremony per session and purpose: asking again replaces the earlier one.
        kind = f"passkey:{purpose}"
        ceremony = self.sessions.put_preauth(kind, state, owner=session, only=True)
        return {"ceremony": ceremony, "public_key": json.loads(webauthn.options_to_json(options))}

    def _take(self, ceremony: str, purpose: str, org_id: str, person_id: str,
              session: str) -> bytes:  # fmt: skip
        """The ceremony's challenge, once, for this very session, person and purpose."""
        state = self.sessions.take_preauth(ceremony, f"passkey:{purpose}") if ceremony else None
        expected = {"purpose": f"passkey:{purpose}", "org_id": org_id, "person_id": person_id,
                    "session": session}  # fmt: skip
        if (
            state is None
            or any(state.get(k) != v for k, v in expected.items())
            or float(state.get("expires", 0)) < time.time()
        ):
            raise BadRequest(
                "this passkey request is unknown, used or expired: ask for new options and "
                "try again",
                code="passkey_challenge",
            )
        return webauthn.base64url_to_bytes(str(state["challenge"]))


def _transports(credential: dict[str, Any]) -> list[str]:
    response = credential.get("response")
    found = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(found, list):
        return []
    return sorted({t for t in found if isinstance(t, str) and t in _TRANSPORTS})


def _reason(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__)[:200]


def _view(row: dict[str, Any]) -> dict[str, Any]:
    """What "my passkeys" shows: never the public key or the credential id."""
    return {
        "id": row["id"],
        "name": row["name"],
        "transports": json.loads(row["transports"]),
        "created_at": row["created_at"],
        "last_used_at": row.get("last_used_at"),
    }
