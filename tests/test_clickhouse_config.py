"""ClickHouse connector settings a tenant controls: the CA is PEM text, and secrets are blanked
in connection-check messages without garbling them.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from astralog.connectors.clickhouse import ClickHouseConfig, ClickHouseConnector
from astralog.runtime import Bootstrap
from astralog.security.redaction import redact
from tests.certs import self_signed
from tests.conftest import bearer


def _ca_pem(name: str = "Customer CA") -> str:
    return self_signed(name)[0].decode()


def _create(client: TestClient, admin: dict[str, str], ca_cert: Any) -> Any:
    config = {"host": "ch.customer.example", "ca_cert": ca_cert}
    return client.post(
        "/v1/connectors", json={"kind": "clickhouse", "name": "ch", "config": config}, headers=admin
    )


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "/etc", "/no/such/file.pem", "../../data/control.sqlite3", "ca.pem"]
)
def test_a_path_is_refused_the_same_way_whether_or_not_it_exists(
    client: TestClient, boot: Bootstrap, path: str
) -> None:
    response = _create(client, bearer(boot.admin_token), path)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "PEM" in detail and "not a file name or path" in detail
    assert "No such file" not in detail and "directory" not in detail.lower()


def test_pem_that_does_not_parse_is_a_clear_400(client: TestClient, boot: Bootstrap) -> None:
    broken = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    response = _create(client, bearer(boot.admin_token), broken)
    assert response.status_code == 400, response.text
    assert "not valid PEM" in response.json()["detail"]


def test_pem_content_is_accepted_and_kept(client: TestClient, boot: Bootstrap) -> None:
    bundle = _ca_pem("A") + _ca_pem("B")
    response = _create(client, bearer(boot.admin_token), bundle)
    assert response.status_code == 201, response.text
    assert response.json()["config"]["ca_cert"].strip() == bundle.strip()
    assert ClickHouseConfig(ca_cert="  ").ca_cert is None


def test_too_large_a_bundle_is_refused() -> None:
    with pytest.raises(ValidationError):
        ClickHouseConfig(ca_cert=_ca_pem() * 40)


# ---- redaction ---------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("password", ["x", "e", "re", "127"])
def test_a_short_password_does_not_garble_the_connection_message(password: str) -> None:
    config = ClickHouseConfig(host="127.0.0.1", port=_closed_port(), secure=False)
    connector = ClickHouseConnector(config, password)
    checks = asyncio.run(connector.probe())
    asyncio.run(connector.close())
    message = checks[0].detail
    assert not checks[0].ok
    assert "***" not in message, message
    assert "127.0.0.1" in message and "retries" in message.lower(), message


def test_secrets_are_still_blanked_where_they_appear() -> None:
    long = "s3cr3t-password-value"
    assert redact(f"auth failed for {long}!", [long]) == "auth failed for ***!"
    assert redact(f"x{long}x", [long]) == "x***x"  # a long secret is masked anywhere
    assert redact("password=x&user=default", ["x"]) == "password=***&user=default"
    assert redact("Max retries exceeded", ["x"]) == "Max retries exceeded"
    assert redact("key 'ab' refused", ["ab", ""]) == "key '***' refused"
