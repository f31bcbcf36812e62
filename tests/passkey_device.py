"""A software WebAuthn authenticator for the tests: what a browser and its authenticator hand
back from ``navigator.credentials.create()`` and ``.get()``, with a real P-256 key, real CBOR
and real signatures, so the service's verification runs unchanged.

Written here rather than taken from ``soft-webauthn``: that package pins ``fido2<2``, which pins
``cryptography<45``, and installing it would roll the project's cryptography (and with it
webauthn, authlib and joserfc) back by several majors in every test environment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

_UP, _UV, _AT = 0x01, 0x04, 0x40  # authenticator data flags: presence, verification, attested


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    """One credential on one authenticator; ``origin`` is where the "browser" runs, and
    ``rp_id`` what the authenticator signs for (a browser derives it from the options)."""

    def __init__(self, origin: str, user_verified: bool = True) -> None:
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.flags = _UP | (_UV if user_verified else 0)
        self.user_handle = b""

    def create(self, options: dict[str, Any], rp_id: str | None = None) -> dict[str, Any]:
        """The answer to ``navigator.credentials.create({publicKey: options})``."""
        rp_id = rp_id or options["rp"]["id"]
        self.user_handle = base64.urlsafe_b64decode(options["user"]["id"] + "==")
        client_data = self._client_data("webauthn.create", options["challenge"])
        numbers = self.key.public_key().public_numbers()
        cose_key = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32), -3: numbers.y.to_bytes(32)}
        attested = bytes(16) + len(self.credential_id).to_bytes(2) + self.credential_id
        auth_data = self._auth_data(rp_id, self.flags | _AT) + attested + cbor2.dumps(cose_key)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return self._credential(
            {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            }
        )

    def get(self, options: dict[str, Any], rp_id: str | None = None) -> dict[str, Any]:
        """The answer to ``navigator.credentials.get({publicKey: options})``; the sign count
        goes up by one, as a real authenticator's does."""
        self.sign_count += 1
        rp_id = rp_id or options["rpId"]
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data(rp_id, self.flags)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return self._credential(
            {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(self.user_handle),
            }
        )

    def clone(self) -> SoftAuthenticator:
        """A copy of the key taken now: its counter falls behind the original's."""
        twin = SoftAuthenticator(self.origin)
        twin.key, twin.credential_id = self.key, self.credential_id
        twin.sign_count, twin.user_handle = self.sign_count, self.user_handle
        return twin

    def _client_data(self, kind: str, challenge: str) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        return json.dumps(data).encode()

    def _auth_data(self, rp_id: str, flags: int) -> bytes:
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + self.sign_count.to_bytes(4)

    def _credential(self, response: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
