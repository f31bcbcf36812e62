"""Field-level encryption of connector secrets: AES-256-GCM envelopes bound to their place.

What this module promises:

* Every sealed connector record has its own random 256-bit data key (DEK). Each secret field is
  encrypted under the DEK with a fresh 96-bit nonce and associated data naming the org, the
  connector and the field, so a ciphertext copied to another org, connector or field does not
  decrypt.
* The DEK is wrapped (AES-256-GCM again) by a master key from settings, with associated data
  naming the org, the connector and the master key id. The record carries that key id, so the
  master key can rotate: :meth:`FieldCipher.rewrap` moves a record to the active key without
  touching the field ciphertexts (``astralog rotate-master``).
* Failures raise :class:`SecretUnavailable` with a message that names the record and the key id,
  never plaintext or key material; ``repr`` of anything here shows no secret.

The sealed form (:meth:`SealedRecord.to_dict`) is plain JSON::

    {"v": 1, "kid": "k2", "dek": "<b64 nonce|wrapped DEK|tag>",
     "fields": {"secret_access_key": "<b64 nonce|ciphertext|tag>"}}
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from astralog.errors import AstralogError, ConfigError
from astralog.settings import StorageSettings

__all__ = ["FieldCipher", "SealedRecord", "SecretUnavailable"]

_VERSION = 1
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GENERATE = 'python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'


class SecretUnavailable(AstralogError):
    """A sealed connector secret cannot be opened (missing key, tampering, wrong place)."""

    title = "Connector secret unavailable"
    slug = "secret-unavailable"


@dataclass(frozen=True)
class SealedRecord:
    """A connector's secrets at rest: key id, wrapped DEK and one ciphertext per field."""

    key_id: str
    wrapped_dek: bytes = field(repr=False)
    fields: Mapping[str, bytes] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable form stored in the control plane."""
        return {
            "v": _VERSION,
            "kid": self.key_id,
            "dek": _b64(self.wrapped_dek),
            "fields": {name: _b64(blob) for name, blob in sorted(self.fields.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SealedRecord:
        """Parse :meth:`to_dict` output; a malformed record raises :class:`SecretUnavailable`."""
        try:
            if data["v"] != _VERSION:
                raise SecretUnavailable(f"sealed record version {data['v']!r} is not supported")
            fields = data["fields"]
            if not isinstance(data["kid"], str) or not isinstance(fields, dict):
                raise TypeError("kid must be a string and fields an object")
            return cls(
                key_id=data["kid"],
                wrapped_dek=_unb64(data["dek"]),
                fields={str(name): _unb64(blob) for name, blob in fields.items()},
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise SecretUnavailable(f"sealed record is malformed: {type(exc).__name__}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SealedRecord:
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretUnavailable("sealed record is not valid JSON") from None
        if not isinstance(data, dict):
            raise SecretUnavailable("sealed record is not a JSON object")
        return cls.from_dict(data)

    def __repr__(self) -> str:
        return f"SealedRecord(key_id={self.key_id!r}, fields={sorted(self.fields)!r})"


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(text, validate=True)


def _associated(*parts: str) -> bytes:
    # JSON of a list is unambiguous: ids containing ':' cannot make two contexts collide.
    return json.dumps(["astralog", _VERSION, *parts], separators=(",", ":")).encode()


def _seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def _open(key: bytes, blob: bytes, associated: bytes) -> bytes:
    """Decrypt; raises InvalidTag on any mismatch (including a too-short blob)."""
    if len(blob) < _NONCE_BYTES + 16:
        raise InvalidTag
    return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated)


class FieldCipher:
    """Seals and opens connector secret fields under the configured master keys."""

    def __init__(self, master_keys: Mapping[str, bytes], active_key_id: str) -> None:
        for key_id, key in master_keys.items():
            if not _KEY_ID.match(key_id):
                raise ConfigError(
                    f"master key id {key_id!r} must be 1-64 characters of letters, digits, ._-"
                )
            if len(key) != _KEY_BYTES:
                raise ConfigError(f"master key {key_id!r} must be 32 bytes, not {len(key)}")
        if active_key_id not in master_keys:
            raise ConfigError(
                f"the active master key {active_key_id!r} is not among the configured master "
                "keys (ASTRALOG_STORAGE__ACTIVE_MASTER_KEY must name one of "
                "ASTRALOG_STORAGE__MASTER_KEYS)"
            )
        self._keys = dict(master_keys)
        self._active = active_key_id

    @classmethod
    def from_settings(cls, storage: StorageSettings) -> FieldCipher:
        """Decode ``ASTRALOG_STORAGE__MASTER_KEYS``; refuse to run without a master key."""
        if not storage.master_keys or not storage.active_master_key:
            raise ConfigError(
                "connector secrets need a master key: set ASTRALOG_STORAGE__MASTER_KEYS="
                '\'{"k1": "<base64 of 32 random bytes>"}\' and '
                f"ASTRALOG_STORAGE__ACTIVE_MASTER_KEY=k1; generate a key with: {_GENERATE}"
            )
        keys: dict[str, bytes] = {}
        for key_id, text in storage.master_keys.items():
            try:
                keys[key_id] = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(
                    f"ASTRALOG_STORAGE__MASTER_KEYS: key {key_id!r} is not valid base64 "
                    f"(generate one with: {_GENERATE})"
                ) from None
        return cls(keys, storage.active_master_key)

    @property
    def active_key_id(self) -> str:
        return self._active

    def seal_record(
        self, org_id: str, connector_id: str, fields: Mapping[str, str]
    ) -> SealedRecord:
        """Encrypt every field under a new DEK wrapped by the active master key."""
        dek = AESGCM.generate_key(bit_length=256)
        sealed = {
            name: _seal(
                dek, value.encode("utf-8"), _associated("field", org_id, connector_id, name)
            )
            for name, value in fields.items()
        }
        wrapped = _seal(
            self._keys[self._active], dek, _associated("dek", org_id, connector_id, self._active)
        )
        return SealedRecord(self._active, wrapped, sealed)

    def open_field(self, org_id: str, connector_id: str, sealed: SealedRecord, field: str) -> str:
        """Decrypt one field; raises :class:`SecretUnavailable` if it cannot be authenticated."""
        blob = sealed.fields.get(field)
        if blob is None:
            raise SecretUnavailable(
                f"connector {connector_id!r} of org {org_id!r} has no secret field {field!r}"
            )
        dek = self._unwrap(sealed, org_id, connector_id)
        try:
            plaintext = _open(dek, blob, _associated("field", org_id, connector_id, field))
        except InvalidTag:
            raise SecretUnavailable(
                f"secret field {field!r} of connector {connector_id!r} in org {org_id!r} failed "
                "authentication: it was altered or copied from another org, connector or field"
            ) from None
        return plaintext.decode("utf-8")

    def rewrap(self, sealed: SealedRecord, org_id: str, connector_id: str) -> SealedRecord:
        """Re-wrap the DEK under the active master key; field ciphertexts stay as they are."""
        if sealed.key_id == self._active:
            return sealed
        dek = self._unwrap(sealed, org_id, connector_id)
        wrapped = _seal(
            self._keys[self._active], dek, _associated("dek", org_id, connector_id, self._active)
        )
        return SealedRecord(self._active, wrapped, dict(sealed.fields))

    def _unwrap(self, sealed: SealedRecord, org_id: str, connector_id: str) -> bytes:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise SecretUnavailable(
                f"connector {connector_id!r} of org {org_id!r} is sealed under master key "
                f"{sealed.key_id!r}, which is not configured: add it back to "
                "ASTRALOG_STORAGE__MASTER_KEYS (retire a key only after `astralog rotate-master` "
                "has rewrapped every record)"
            )
        try:
            return _open(
                key, sealed.wrapped_dek, _associated("dek", org_id, connector_id, sealed.key_id)
            )
        except InvalidTag:
            raise SecretUnavailable(
                f"the data key of connector {connector_id!r} in org {org_id!r} failed "
                f"authentication under master key {sealed.key_id!r}: the record was altered, "
                "copied from another org or connector, or the key's bytes changed"
            ) from None

    def __repr__(self) -> str:
        return f"FieldCipher(active={self._active!r}, key_ids={sorted(self._keys)!r})"
