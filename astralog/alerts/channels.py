"""One delivery attempt over one channel: a signed webhook POST, or an e-mail over SMTP.

Stage: alert delivery (channels). What it promises:

* :func:`post_webhook` checks the endpoint URL again at every attempt (a host that now resolves
  to a private or metadata address is refused: DNS rebinding between creation and delivery gets
  nowhere) and connects only to the addresses that check returned (aiohttp with
  :func:`~astralog.security.egress.pinned_connector_args`). It follows no redirect, ignores
  environment proxies (``trust_env=False``: a proxy would be an unchecked hop), sends no
  caller-chosen header on the deny-list, gives up after a total timeout (the address check
  included) and reads at most ``max_response_bytes`` of the answer. It never raises for the
  receiver's sake: every outcome is a :class:`Outcome`.
* :func:`send_email` hands one message to the operator's SMTP server (stdlib ``smtplib`` in a
  worker thread: alert mail is rare, and the standard library needs no new dependency), with
  STARTTLS or implicit TLS as configured.
"""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import aiohttp

from astralog.controlplane.endpoint_targets import (
    DENIED_HEADERS,
    Target,
    WebhookPolicy,
    check_email,
    check_headers,
)
from astralog.errors import AstralogError
from astralog.security.egress import CheckedEndpoint, pinned_connector_args

__all__ = [
    "DENIED_HEADERS",
    "Outcome",
    "SmtpConfig",
    "Target",
    "WebhookPolicy",
    "check_email",
    "check_headers",
    "post_webhook",
    "send_email",
]

USER_AGENT = "Astralog-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. ``status`` None: no HTTP answer (or an e-mail)."""

    status: int | None
    error: str = ""  # "" when delivered
    retry_after: float | None = None  # seconds the receiver asked us to wait

    @property
    def delivered(self) -> bool:
        return not self.error


async def post_webhook(
    policy: WebhookPolicy, url: str, headers: Mapping[str, str], body: bytes
) -> Outcome:
    try:
        # One deadline over the address check too: a tenant's slow DNS must not hold a slot.
        async with asyncio.timeout(policy.timeout_seconds):
            checked = await asyncio.to_thread(policy.check, url)
            return await _post(policy, checked, headers, body)
    except AstralogError as exc:
        return Outcome(None, f"refused at delivery time: {exc.detail}")
    except TimeoutError:
        return Outcome(None, f"no answer within {policy.timeout_seconds:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome(None, f"connection failed: {type(exc).__name__}: {exc}"[:500])


async def _post(
    policy: WebhookPolicy, checked: CheckedEndpoint, headers: Mapping[str, str], body: bytes
) -> Outcome:
    connector = aiohttp.TCPConnector(**pinned_connector_args(checked))
    timeout = aiohttp.ClientTimeout(total=policy.timeout_seconds)
    sent = {**headers, "content-type": "application/json", "user-agent": USER_AGENT}
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
        session.post(checked.url, data=body, headers=sent, allow_redirects=False) as response,
    ):
        await response.content.read(policy.max_response_bytes)  # bounded; the rest is dropped
        return _judge(response.status, response.headers)


def _judge(status: int, headers: Mapping[str, str]) -> Outcome:
    if 200 <= status < 300:
        return Outcome(status)
    if 300 <= status < 400:
        where = headers.get("location", "")[:200]
        return Outcome(status, f"answered {status} (redirect to {where!r} not followed)")
    return Outcome(status, f"answered {status}", _retry_after(headers.get("retry-after")))


def _retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``: delta-seconds, or an HTTP date (RFC 9110 10.2.3; its
    obsolete forms too, and a date with no zone is GMT). A date in the past means now."""
    text = (value or "").strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    security: str = "starttls"  # "starttls" | "tls" | "none"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_seconds: float = 10.0


def _email(config: SmtpConfig, to: str, subject: str, text: str, msg_id: str) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = "".join(ch for ch in subject if ch.isprintable())[:200]
    message["Message-ID"] = f"<{msg_id}@astralog>"  # the same across retries: mail dedupes too
    message.set_content(text)
    return message


def _send(config: SmtpConfig, message: EmailMessage) -> None:
    context = ssl.create_default_context()
    timeout = config.timeout_seconds
    if config.security == "tls":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            config.host, config.port, timeout=timeout, context=context
        )
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=timeout)
    with smtp:
        if config.security == "starttls":
            smtp.starttls(context=context)
        if config.username:
            smtp.login(config.username, config.password)
        smtp.send_message(message)


async def send_email(config: SmtpConfig, to: str, subject: str, text: str, msg_id: str) -> Outcome:
    try:
        await asyncio.to_thread(_send, config, _email(config, to, subject, text, msg_id))
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        return Outcome(None, f"SMTP: {type(exc).__name__}: {exc}"[:500])
    return Outcome(None)
