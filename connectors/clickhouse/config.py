"""Where the customer's ClickHouse is and how to talk to it (:class:`ClickHouseConfig`; the
password travels apart), and the DDL of the log table rendered for it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import string
from typing import TYPE_CHECKING

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator

from astralog.schema import schema_text

if TYPE_CHECKING:
    pass


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_MAX_CA_PEM = 32 * 1024  # a CA bundle of a few certificates; the admin body cap is 64 KiB
_MAX_CA_CERTS = 16


class ClickHouseConfig(BaseModel):
    """Where the customer's ClickHouse is and how to talk to it; the password travels apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="localhost", description="ClickHouse server host name or IP address.")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="HTTP(S) port; 8443 with TLS, 8123 without, if unset.",
    )
    user: str = Field(
        default="default", min_length=1, max_length=128, description="ClickHouse user."
    )
    database: str = Field(
        default="astralog", description="Database of the log table, created if missing."
    )
    table: str = Field(
        default="otel_logs", description="Log table, created from otel_logs.sql if missing."
    )
    secure: bool = Field(default=True, description="Use HTTPS (TLS).")
    verify: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_cert: str | None = Field(
        default=None,
        max_length=_MAX_CA_PEM,
        description="PEM text of the CA certificate(s) to verify the server with (else the "
        "system CAs). The content, never a path: a path would make the server read its own "
        "files on a tenant's behalf.",
    )
    ttl_days: int = Field(
        default=365,
        ge=1,
        le=36500,
        description="Table TTL in days: a backstop at the longest retention any plan allows.",
    )
    connect_timeout_seconds: int = Field(
        default=10, ge=1, le=300, description="TCP/TLS connect timeout."
    )
    send_receive_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="Timeout for sending a request and reading its response.",
    )

    @field_validator("database", "table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError("use letters, digits and _ (not starting with a digit), at most 63")
        return value

    @field_validator("ca_cert")
    @classmethod
    def _ca_pem(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        return validate_ca_pem(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        # Only the shape is checked here; whether the address may be reached is the egress
        # check's job (astralog.security.egress), done before the connector is built.
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(value.removeprefix("[").removesuffix("]")))
        if not _HOSTNAME.fullmatch(value):
            raise ValueError("a host name or IP address, without scheme, port or path")
        return value

    @property
    def resolved_port(self) -> int:
        return self.port or (8443 if self.secure else 8123)

    @property
    def location(self) -> str:
        """The server as a URL, for messages and batch URIs (never with credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.resolved_port}"


def validate_ca_pem(text: str) -> str:
    """``text`` if it holds PEM certificates; a refusal never says whether a file exists."""
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(
            "paste the CA certificate itself as PEM text (-----BEGIN CERTIFICATE----- ...), "
            "not a file name or path"
        )
    try:
        certificates = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise ValueError(
            "the CA certificate is not valid PEM: paste every -----BEGIN CERTIFICATE----- block "
            "whole, with its END line"
        ) from None
    if len(certificates) > _MAX_CA_CERTS:
        raise ValueError(f"at most {_MAX_CA_CERTS} CA certificates")
    return text.strip() + "\n"


def render_ddl(config: ClickHouseConfig) -> str:
    """``schemas/otel_logs.sql`` with the database, table and TTL of ``config`` filled in."""
    return string.Template(schema_text("otel_logs.sql")).substitute(
        database=quote(config.database), table=quote(config.table), ttl_days=int(config.ttl_days)
    )


def word_index_ddl(config: ClickHouseConfig) -> str:
    """``ALTER TABLE ... ADD INDEX IF NOT EXISTS`` for the body's word index, as otel_logs.sql
    declares it: a table created before that index existed gets it on the next start."""
    found = re.search(r"^\s*INDEX (idx_body_words .*)$", schema_text("otel_logs.sql"), re.M)
    assert found, "otel_logs.sql declares idx_body_words"
    table = f"{quote(config.database)}.{quote(config.table)}"
    return f"ALTER TABLE {table} ADD INDEX IF NOT EXISTS {found.group(1).rstrip(',')}"


def quote(identifier: str) -> str:
    """A validated identifier in backquotes (validation makes escaping unnecessary)."""
    if not _IDENTIFIER.fullmatch(identifier):
        raise ValueError(f"{identifier!r} is not a plain ClickHouse identifier")
    return f"`{identifier}`"


def quote_user(user: str) -> str:
    """A user name in backquotes for a GRANT statement shown to an admin."""
    return "`" + user.replace("\\", "\\\\").replace("`", "\\`") + "`"
