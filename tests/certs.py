"""Self-signed CA certificates made on the fly for the TLS tests (nothing committed)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(
    name: str,
    *,
    dns_name: bool = False,
    valid_from: datetime.timedelta = datetime.timedelta(minutes=-5),
    valid_until: datetime.timedelta = datetime.timedelta(hours=1),
    passphrase: bytes = b"",
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a CA named ``name``, valid from ``valid_from`` to
    ``valid_until`` around now; with ``dns_name`` it also serves ``name`` as a TLS server name,
    with ``passphrase`` its key is encrypted."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid_from)
        .not_valid_after(now + valid_until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if dns_name:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
