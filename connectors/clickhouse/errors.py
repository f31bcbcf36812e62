"""What clickhouse-connect's errors mean for a connector: retryable (network, timeouts, 5xx,
TOO_MANY_PARTS, ...) or permanent (authentication, grants, unknown database, syntax).
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError
from urllib3.exceptions import HTTPError

if TYPE_CHECKING:
    pass


# ClickHouse error codes a server recovers from without a change on our side.
_RETRYABLE_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        160,  # TOO_SLOW
        201,  # QUOTA_EXCEEDED: the quota interval rolls over
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY: a replica lost Keeper and will recover
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS: merges catch up
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        319,  # UNKNOWN_STATUS_OF_INSERT: the dedup token makes the retry safe
        373,  # SESSION_IS_LOCKED
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        473,  # DEADLOCK_AVOIDED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION (network)
    }
)
# Named for the reader: every other code is permanent too, these are the ones admins meet.
_PERMANENT_CODES = frozenset(
    {
        16,  # NO_SUCH_COLUMN_IN_TABLE: the table predates a column
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        81,  # UNKNOWN_DATABASE
        164,  # READONLY user
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        195,  # IP_ADDRESS_NOT_ALLOWED
        497,  # ACCESS_DENIED: a grant is missing
        516,  # AUTHENTICATION_FAILED
    }
)
# The table or database vanished under us: forget that it exists so the next attempt recreates.
SCHEMA_GONE_CODES = frozenset({60, 81})
_RETRYABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EIO, errno.EMFILE})
_RETRYABLE_HTTP_STATUS = re.compile(r"\bHTTP status (?:408|429|5\d\d)\b")


def translatable(exc: BaseException) -> bool:
    """Errors of the client, its transport or the OS; anything else is a bug and propagates."""
    return isinstance(exc, ClickHouseError | HTTPError | OSError)


def retryable(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    if isinstance(exc, ClickHouseError) and code is not None:
        return code in _RETRYABLE_CODES
    if _RETRYABLE_HTTP_STATUS.search(str(exc)):
        return True
    if isinstance(exc, OSError) and exc.errno in _RETRYABLE_ERRNOS:
        return True  # chDB spools inserts through a temporary file
    # No server error code: the request never got a ClickHouse answer (refused, reset, timed
    # out, a proxy's 5xx after the client's own retries).
    return isinstance(exc, OperationalError | HTTPError | TimeoutError | ConnectionError)
