"""The ClickHouse destination: each batch becomes rows of an ``otel_logs``-compatible table.

* :mod:`.config`: :class:`ClickHouseConfig` and the table's DDL rendered for it;
* :mod:`.errors`: clickhouse-connect's errors as retryable or permanent;
* :mod:`.connector`: :class:`ClickHouseConnector`, the contract of :mod:`astralog.connectors.base`;
* :mod:`.kind`: the ClickHouse kind, as the API configures and builds it.
"""

from .config import ClickHouseConfig, render_ddl, validate_ca_pem
from .connector import ClickHouseConnector
from .kind import KIND

__all__ = ["KIND", "ClickHouseConfig", "ClickHouseConnector", "render_ddl", "validate_ca_pem"]
