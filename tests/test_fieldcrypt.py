"""Connector secrets at rest: sealed in place, useless elsewhere, and the master key can rotate."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from astralog.errors import ConfigError
from astralog.security.fieldcrypt import FieldCipher, SealedRecord, SecretUnavailable
from astralog.settings import StorageSettings

K1, K2 = os.urandom(32), os.urandom(32)
SECRETS = {
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "password": "pässwörd with ünicode ✓",
}


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher({"k1": K1}, "k1")


def _round_trip_json(sealed: SealedRecord) -> SealedRecord:
    return SealedRecord.from_json(json.dumps(sealed.to_dict()))


def test_round_trip_through_json(cipher: FieldCipher) -> None:
    sealed = _round_trip_json(cipher.seal_record("org_a", "con_1", SECRETS))
    for name, value in SECRETS.items():
        assert cipher.open_field("org_a", "con_1", sealed, name) == value


def test_every_record_has_its_own_data_key_and_nonces(cipher: FieldCipher) -> None:
    one = cipher.seal_record("org_a", "con_1", SECRETS)
    two = cipher.seal_record("org_a", "con_1", SECRETS)
    assert one.wrapped_dek != two.wrapped_dek
    assert all(one.fields[name] != two.fields[name] for name in SECRETS)


def test_sealed_json_records_the_key_id_and_no_plaintext(cipher: FieldCipher) -> None:
    text = cipher.seal_record("org_a", "con_1", SECRETS).to_json()
    data = json.loads(text)
    assert data["kid"] == "k1"
    assert set(data["fields"]) == set(SECRETS)
    for value in SECRETS.values():
        for start in range(len(value) - 5):  # no 6-character run of any secret
            assert value[start : start + 6] not in text
            assert value[start : start + 6].encode().hex() not in text
    for key in (K1, K2):
        assert base64.b64encode(key).decode() not in text


@pytest.mark.parametrize(
    ("org", "connector", "field"),
    [
        ("org_b", "con_1", "secret_access_key"),  # another org
        ("org_a", "con_2", "secret_access_key"),  # another connector
        ("org_a:con_1", "", "secret_access_key"),  # the same characters, split differently
    ],
)
def test_a_record_opened_in_another_place_fails(
    cipher: FieldCipher, org: str, connector: str, field: str
) -> None:
    sealed = cipher.seal_record("org_a", "con_1", SECRETS)
    with pytest.raises(SecretUnavailable, match="failed authentication") as failed:
        cipher.open_field(org, connector, sealed, field)
    assert SECRETS[field] not in failed.value.detail


def _moved(sealed: SealedRecord, **changes: Any) -> SealedRecord:
    data = sealed.to_dict()
    data.update(changes)
    return SealedRecord.from_dict(data)


def test_a_field_ciphertext_moved_to_another_field_fails(cipher: FieldCipher) -> None:
    sealed = cipher.seal_record("org_a", "con_1", SECRETS)
    fields = sealed.to_dict()["fields"]
    swapped = _moved(sealed, fields={**fields, "password": fields["secret_access_key"]})
    with pytest.raises(SecretUnavailable, match=r"'password'.*failed authentication"):
        cipher.open_field("org_a", "con_1", swapped, "password")


def test_a_field_ciphertext_moved_to_another_orgs_record_fails(cipher: FieldCipher) -> None:
    # The attacker controls org_b's record and pastes org_a's field into it.
    victim = cipher.seal_record("org_a", "con_1", SECRETS)
    attacker = cipher.seal_record("org_b", "con_1", {"secret_access_key": "mine"})
    pasted = _moved(
        attacker,
        fields={"secret_access_key": victim.to_dict()["fields"]["secret_access_key"]},
    )
    with pytest.raises(SecretUnavailable, match="failed authentication"):
        cipher.open_field("org_b", "con_1", pasted, "secret_access_key")


@pytest.mark.parametrize("part", ["field", "field-nonce", "dek", "dek-nonce", "truncated"])
def test_tampered_ciphertext_fails(cipher: FieldCipher, part: str) -> None:
    sealed = cipher.seal_record("org_a", "con_1", SECRETS)
    blob = sealed.fields["password"] if part.startswith("field") else sealed.wrapped_dek
    position = 0 if part.endswith("nonce") else len(blob) - 20
    tampered = bytearray(blob)
    tampered[position] ^= 0x01
    broken = bytes(tampered) if part != "truncated" else blob[:20]
    if part.startswith("field"):
        altered = SealedRecord(sealed.key_id, sealed.wrapped_dek, {"password": broken})
    else:
        altered = SealedRecord(sealed.key_id, broken, sealed.fields)
    with pytest.raises(SecretUnavailable, match="failed authentication"):
        cipher.open_field("org_a", "con_1", altered, "password")


def test_a_relabelled_key_id_fails() -> None:
    both = FieldCipher({"k1": K1, "k2": K1}, "k1")  # same bytes, different id
    sealed = both.seal_record("org_a", "con_1", SECRETS)
    relabelled = SealedRecord("k2", sealed.wrapped_dek, sealed.fields)
    with pytest.raises(SecretUnavailable, match="failed authentication under master key 'k2'"):
        both.open_field("org_a", "con_1", relabelled, "password")


def test_rotation_rewraps_without_touching_fields() -> None:
    old = FieldCipher({"k1": K1}, "k1")
    sealed = old.seal_record("org_a", "con_1", SECRETS)

    during = FieldCipher({"k1": K1, "k2": K2}, "k2")
    assert during.open_field("org_a", "con_1", sealed, "password") == SECRETS["password"]
    rewrapped = during.rewrap(sealed, "org_a", "con_1")
    assert rewrapped.key_id == "k2"
    assert rewrapped.fields == sealed.fields
    assert rewrapped.wrapped_dek != sealed.wrapped_dek
    assert during.rewrap(rewrapped, "org_a", "con_1") is rewrapped  # already current

    after = FieldCipher({"k2": K2}, "k2")
    stored = _round_trip_json(rewrapped)
    for name, value in SECRETS.items():
        assert after.open_field("org_a", "con_1", stored, name) == value
    with pytest.raises(SecretUnavailable, match="'k1', which is not configured"):
        after.open_field("org_a", "con_1", sealed, "password")


def test_rewrap_is_bound_to_the_record_place() -> None:
    sealed = FieldCipher({"k1": K1}, "k1").seal_record("org_a", "con_1", SECRETS)
    with pytest.raises(SecretUnavailable, match="failed authentication"):
        FieldCipher({"k1": K1, "k2": K2}, "k2").rewrap(sealed, "org_b", "con_1")


def test_unknown_key_id_is_a_clear_error(cipher: FieldCipher) -> None:
    sealed = FieldCipher({"retired": K2}, "retired").seal_record("org_a", "con_1", SECRETS)
    with pytest.raises(SecretUnavailable) as failed:
        cipher.open_field("org_a", "con_1", sealed, "password")
    detail = failed.value.detail
    assert "'retired', which is not configured" in detail
    assert "ASTRALOG_STORAGE__MASTER_KEYS" in detail
    assert "rotate-master" in detail


def test_missing_field_and_malformed_records_are_clear_errors(cipher: FieldCipher) -> None:
    sealed = cipher.seal_record("org_a", "con_1", SECRETS)
    with pytest.raises(SecretUnavailable, match="no secret field 'token'"):
        cipher.open_field("org_a", "con_1", sealed, "token")
    good = sealed.to_dict()
    for bad in (
        {**good, "v": 2},
        {**good, "dek": "not base64!"},
        {k: v for k, v in good.items() if k != "kid"},
        {**good, "fields": ["x"]},
    ):
        with pytest.raises(SecretUnavailable):
            SealedRecord.from_dict(bad)
    with pytest.raises(SecretUnavailable, match="not valid JSON"):
        SealedRecord.from_json("{")


def test_nothing_secret_in_reprs(cipher: FieldCipher) -> None:
    sealed = cipher.seal_record("org_a", "con_1", SECRETS)
    shown = repr(cipher) + repr(sealed) + str(sealed)
    assert "k1" in shown and "password" in shown
    for secret in (*SECRETS.values(), base64.b64encode(K1).decode(), repr(K1)):
        assert secret not in shown
    assert base64.b64encode(sealed.wrapped_dek).decode() not in shown


# --- configuration ----------------------------------------------------------------------------


def test_from_settings_decodes_base64_keys() -> None:
    storage = StorageSettings(
        master_keys={"k1": base64.b64encode(K1).decode(), "k2": base64.b64encode(K2).decode()},
        active_master_key="k2",
    )
    cipher = FieldCipher.from_settings(storage)
    assert cipher.active_key_id == "k2"
    sealed = cipher.seal_record("org_a", "con_1", {"password": "x"})
    assert FieldCipher({"k2": K2}, "k2").open_field("org_a", "con_1", sealed, "password") == "x"


def test_no_master_key_is_a_config_error_with_instructions() -> None:
    with pytest.raises(ConfigError) as refused:
        FieldCipher.from_settings(StorageSettings())
    detail = refused.value.detail
    assert "ASTRALOG_STORAGE__MASTER_KEYS" in detail
    assert "ASTRALOG_STORAGE__ACTIVE_MASTER_KEY" in detail
    assert "os.urandom(32)" in detail


@pytest.mark.parametrize(
    ("keys", "active", "message"),
    [
        ({"k1": "%%%"}, "k1", "not valid base64"),
        ({"k1": base64.b64encode(b"short").decode()}, "k1", "must be 32 bytes"),
        ({"k:1": base64.b64encode(K1).decode()}, "k:1", "letters, digits"),
        ({"k1": base64.b64encode(K1).decode()}, "k9", "not among the configured"),
    ],
)
def test_bad_master_keys_are_config_errors(keys: dict[str, str], active: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        FieldCipher.from_settings(StorageSettings(master_keys=keys, active_master_key=active))
    for text in keys.values():
        if len(text) > 4:
            assert text not in refused.value.detail  # never echo key material
