"""Bring your own storage: the operator's side of a customer's connector.

Each kind of destination declares itself beside its connector
(:class:`astralog.connectors.registry.ConnectorKind`: config model, secret and location fields,
policy, build). What this module adds is what only the operator decides: a customer's endpoint
is checked against the SSRF rules of :class:`StorageSettings` with
:mod:`astralog.security.egress`, and the connection is pinned to the address that was checked,
so DNS rebinding cannot slip past. A connector record holds the validated, secret-free config
(returned by the API) and the secrets sealed with :mod:`astralog.security.fieldcrypt` (never
returned).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp.abc import AbstractResolver
from urllib3 import PoolManager

from astralog.connectors.base import Connector
from astralog.connectors.registry import Egress, kind, kinds
from astralog.security.egress import PinnedResolver, check_endpoint, pinned_pool_manager
from astralog.settings import StorageSettings

# Where a connector's data lives: fixed once it has received batches, which must stay readable.
# The endpoint or host may move (a new address for the same bucket or database).
LOCATION_FIELDS: Mapping[str, tuple[str, ...]] = {
    name: spec.location_fields for name, spec in kinds().items()
}


class OperatorEgress(Egress):
    """The SSRF rules of the operator's storage settings, and connections pinned by them."""

    def __init__(self, storage: StorageSettings) -> None:
        self.storage = storage

    def pinned_resolver(self, url: str) -> AbstractResolver:
        checked = check_endpoint(
            url,
            allow_networks=self.storage.allow_private_networks,
            allow_http=self.storage.allow_http_endpoints,
        )
        return PinnedResolver(checked)

    def pinned_pool(
        self, url: str, *, schemes: tuple[str, ...], verify: bool, ca_pem: str | None
    ) -> PoolManager:
        checked = check_endpoint(
            url,
            schemes=schemes,
            allow_networks=self.storage.allow_private_networks,
            allow_http=self.storage.allow_http_endpoints,
        )
        return pinned_pool_manager(checked, verify=verify, ca_pem=ca_pem)


def validate_config(
    kind_name: str, config: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    """A JSON-ready config, as the kind declares it (see ``ConnectorKind.validate_config``)."""
    return kind(kind_name).validate_config(config, previous)


def validate_secrets(kind_name: str, secrets: dict[str, Any]) -> dict[str, str]:
    return kind(kind_name).validate_secrets(secrets)


def build(
    kind_name: str, config: dict[str, Any], secrets: dict[str, str], storage: StorageSettings
) -> Connector:
    """A live connector, its endpoint checked against SSRF rules and pinned."""
    return kind(kind_name).connector(config, secrets, OperatorEgress(storage))


def policy(kind_name: str, config: dict[str, Any], storage: StorageSettings) -> dict[str, Any]:
    """The least-privilege policy the admin pastes into their cloud or database."""
    return kind(kind_name).policy_text(config, storage.aws_principal_arn)
