"""The ClickHouse kind: how a customer's database is configured through the API and built (see
:class:`astralog.connectors.registry.ConnectorKind`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..registry import ConnectorKind, Egress

if TYPE_CHECKING:
    pass

from .config import ClickHouseConfig
from .connector import ClickHouseConnector


def _build(
    config: ClickHouseConfig, secrets: Mapping[str, str], egress: Egress
) -> ClickHouseConnector:
    scheme = "https" if config.secure else "http"
    pool = egress.pinned_pool(
        config.location, schemes=(scheme,), verify=config.verify, ca_pem=config.ca_cert
    )
    return ClickHouseConnector(config, secrets.get("password", ""), pool_mgr=pool)


def _policy(config: ClickHouseConfig, principal: str) -> dict[str, Any]:
    grants = ClickHouseConnector(config).grant_statements(config.user)
    return {"policy": {"grants": grants}, "text": ";\n".join(grants) + ";"}


KIND = ConnectorKind(
    name="clickhouse",
    config=ClickHouseConfig,
    secret_fields=("password",),
    location_fields=("database", "table"),
    build=_build,
    policy=_policy,
)
