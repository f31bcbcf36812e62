"""What an alert endpoint may be: a webhook URL that is a safe request target, an e-mail
address, extra headers off the deny-list; and what delivery needs to reach one.

Stage: control plane (alert endpoints). What it promises: :class:`WebhookPolicy` checks a URL as
a server-side request target (the endpoint is checked when it is set, and delivery checks it
again at every attempt: :mod:`astralog.alerts.channels`); :func:`check_headers` and
:func:`check_email` refuse with a 400 that says what is wrong.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astralog.errors import BadRequest
from astralog.security.egress import CheckedEndpoint, UnsafeEndpoint, check_endpoint
from astralog.security.egress.addresses import ALLOW_SETTING
from astralog.security.egress.endpoint import Resolve

__all__ = ["DENIED_HEADERS", "Target", "WebhookPolicy", "check_email", "check_headers"]

ALLOW_WEBHOOK_SETTING = "ASTRALOG_ALERTS__WEBHOOK_ALLOW_PRIVATE_NETWORKS"

# Headers an endpoint's configuration may not set: framing and hop-by-hop headers (request
# smuggling), the signature headers (a receiver must trust only ours), forwarding and proxy
# headers (they lie to the receiver's access control about who is calling), and cookies.
DENIED_HEADERS = frozenset(
    {
        "host", "content-length", "content-type", "content-encoding", "transfer-encoding",
        "connection", "keep-alive", "upgrade", "te", "trailer", "expect", "cookie",
        "forwarded", "via", "user-agent", "x-real-ip", "true-client-ip",
    }
)  # fmt: skip
DENIED_PREFIXES = ("webhook-", "proxy-", "x-forwarded-", "sec-")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_MAX_HEADERS = 10
_MAX_VALUE = 1024
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class Target:
    """What the worker needs to send to one endpoint (secrets in force now, newest first)."""

    endpoint_id: str
    org_id: str
    kind: str  # "webhook" | "email"
    target: str  # the URL or the address
    enabled: bool
    secrets: tuple[str, ...]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class WebhookPolicy:
    allow_networks: tuple[str, ...] = ()
    allow_http: bool = False
    timeout_seconds: float = 10.0
    max_response_bytes: int = 64 * 1024
    resolve: Resolve = field(default=socket.getaddrinfo)

    def check(self, url: str) -> CheckedEndpoint:
        """The URL as a checked request target; :class:`UnsafeEndpoint` names what is wrong."""
        try:
            return check_endpoint(
                url,
                schemes=("https",),
                allow_http=self.allow_http,
                allow_networks=self.allow_networks,
                resolve=self.resolve,
            )
        except UnsafeEndpoint as exc:
            raise UnsafeEndpoint(exc.detail.replace(ALLOW_SETTING, ALLOW_WEBHOOK_SETTING)) from None


def check_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """An endpoint's extra headers, refused if any is on the deny-list or malformed."""
    if len(headers) > _MAX_HEADERS:
        raise BadRequest(f"at most {_MAX_HEADERS} extra headers per endpoint")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        lower = str(name).lower()
        if not _TOKEN.match(str(name)):
            raise BadRequest(f"header name {str(name)[:40]!r} is not a valid HTTP token")
        if lower in DENIED_HEADERS or lower.startswith(DENIED_PREFIXES):
            raise BadRequest(f"header {name!r} is set by Astralog and cannot be configured")
        if not isinstance(value, str) or len(value) > _MAX_VALUE:
            raise BadRequest(f"header {name!r}: the value must be a string of at most 1024 chars")
        if any(not ch.isprintable() or ch in "\r\n" for ch in value):
            raise BadRequest(f"header {name!r}: the value holds control characters")
        clean[lower] = value
    return clean


def check_email(address: str) -> str:
    if len(address) > 254 or not _EMAIL.match(address):
        raise BadRequest(f"{address[:80]!r} is not a plain e-mail address (local@domain)")
    return address
