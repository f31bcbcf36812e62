"""The delivery worker: claim due outbox rows, attempt each, and decide what comes next.

Stage: alert delivery (worker). What it promises: every row is attempted until it is delivered
(2xx, or the SMTP server took it) or the retry schedule is spent, then it stays ``failed`` in
the delivery log with its last error, replayable. Retries follow the Standard Webhooks schedule
(by default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first attempt) with +-20 %
jitter, so receivers coming back from an outage are not hit by every sender at once; a
``Retry-After`` longer than the scheduled wait is honoured, up to a cap. A 410 Gone disables the
endpoint (an event saying why) and nothing more is sent to it until an admin enables it again.
A webhook's ``webhook-id`` is the message id on every attempt, and the signature is computed at
each attempt with the secrets in force then. Each failure is one log line and a metric.
Nothing is sent for an org pending deletion: its rows fail, saying so (replayable if an
operator restores it). Delivered and failed rows stay in the delivery log for ``log_days`` (a
setting), then the worker prunes them, at most once an hour.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from astralog.alerts.channels import (
    Outcome,
    SmtpConfig,
    Target,
    WebhookPolicy,
    post_webhook,
    send_email,
)
from astralog.alerts.outbox import Attempt, Delivery, Outbox, Share
from astralog.alerts.sendlimits import ManualSends
from astralog.controlplane.store import Actor
from astralog.errors import AstralogError
from astralog.security import webhook_signing as signing
from astralog.settings import AlertsSettings

__all__ = [
    "DEFAULT_SCHEDULE",
    "DeliveryMetrics",
    "DeliveryWorker",
    "EndpointDirectory",
    "RetryPolicy",
    "build_worker",
    "smtp_config",
    "webhook_policy",
]

log = logging.getLogger("astralog.alerts.delivery")
WORKER = Actor("system:alert-delivery", "local")
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
PRUNE_EVERY_SECONDS = 3600.0


def _never(org_id: str) -> bool:
    return False


class EndpointDirectory(Protocol):
    def target(self, org_id: str, endpoint_id: str) -> Target | None: ...

    def disable(self, org_id: str, endpoint_id: str, reason: str, actor: Actor) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    schedule_seconds: Sequence[float] = DEFAULT_SCHEDULE
    jitter: float = 0.2
    retry_after_max_seconds: float = 3600.0

    @property
    def attempts(self) -> int:
        return 1 + len(self.schedule_seconds)

    def delay(self, made: int, retry_after: float | None) -> float | None:
        """Seconds until the next attempt after ``made`` attempts, or None: give up."""
        if made > len(self.schedule_seconds):
            return None
        scheduled = self.schedule_seconds[made - 1]
        delay = scheduled * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_seconds))
        return delay


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "astralog_alert_delivery_attempts",
            "Alert delivery attempts by channel and result (delivered, retry, failed, disabled)",
            ["channel", "result"],
            registry=registry,
        )
        self.seconds = Histogram(
            "astralog_alert_delivery_seconds",
            "Time one delivery attempt took",
            ["channel"],
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


class DeliveryWorker:
    """Keeps up to ``concurrency`` attempts running; a slot freed by one attempt is refilled
    at once, never after the slowest of a batch. One endpoint holds at most ``per_endpoint``
    slots and one org at most ``per_org`` (and never more than half of them), so a receiver
    that never answers costs its own org a slot or two until its attempts time out, and the
    other orgs' rows, dealt round-robin by :meth:`Outbox.claim`, go out meanwhile."""

    def __init__(
        self, outbox: Outbox, endpoints: EndpointDirectory, policy: WebhookPolicy,
        retry: RetryPolicy, metrics: DeliveryMetrics, *, smtp: SmtpConfig | None = None,
        concurrency: int = 8, per_endpoint: int = 2, per_org: int = 4, poll_seconds: float = 1.0,
        log_days: float = 30.0, clock: Callable[[], int] = time.time_ns,
        org_stopped: Callable[[str], bool] = _never, manual: ManualSends | None = None,
    ) -> None:  # fmt: skip
        self.outbox, self.endpoints, self.policy = outbox, endpoints, policy
        self.retry, self.metrics, self.smtp = retry, metrics, smtp
        self.concurrency, self.poll_seconds, self.clock = concurrency, poll_seconds, clock
        self.per_endpoint = per_endpoint
        self.per_org = max(1, min(per_org, concurrency // 2))
        self.keep_ns = int(log_days * 86_400 * 1e9)
        self.org_stopped = org_stopped
        self.manual = manual or ManualSends()
        self._wake = asyncio.Event()
        self._pruned_at = -PRUNE_EVERY_SECONDS  # monotonic; the first round prunes
        self._running: dict[asyncio.Task[None], Delivery] = {}

    def wake(self) -> None:
        """Look for due rows now (call from the event loop's thread)."""
        self._wake.set()

    async def run(self) -> None:
        # An event binds to the loop that first waits on it; a server started again in the
        # same process (a second lifespan) runs on a new loop.
        self._wake = asyncio.Event()
        recovered = await asyncio.to_thread(self.outbox.recover)
        if recovered:
            log.info("alert deliveries interrupted by the last stop are due again: %d", recovered)
        try:
            while True:
                self._wake.clear()  # set again by wake() or by an attempt that ends
                try:
                    await self._prune()
                    started = await self._start_due()
                except Exception:  # a bad row or a full disk must not end delivery for good
                    log.exception("alert delivery round failed")
                    started = []
                if not started:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Attempts still running end with the worker; their rows are leased, and due again
        at the next start (:meth:`Outbox.recover`) under the same id."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _prune(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        pruned = await asyncio.to_thread(self.outbox.prune, self.clock() - self.keep_ns)
        if pruned:
            log.info("pruned %d delivered or failed alert deliveries from the log", pruned)

    async def run_once(self) -> int:
        """Start what is due and fits the free slots, and wait for those attempts; how many."""
        started = await self._start_due()
        await asyncio.gather(*started)
        return len(started)

    async def _start_due(self) -> list[asyncio.Task[None]]:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return []
        due = await asyncio.to_thread(self.outbox.claim, self.clock(), free, self._share())
        return [self._start(delivery) for delivery in due]

    def _share(self) -> Share:
        endpoints = collections.Counter(d.endpoint_id for d in self._running.values())
        orgs = collections.Counter(d.org_id for d in self._running.values())
        return Share(self.per_endpoint, self.per_org, endpoints, orgs)

    def _start(self, delivery: Delivery) -> asyncio.Task[None]:
        task = asyncio.create_task(self._guarded(delivery))
        self._running[task] = delivery
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a slot is free: claim the next row now, not at the next poll

    async def _guarded(self, delivery: Delivery) -> None:
        try:
            await self._deliver(delivery)
        except Exception:  # the row stays leased and is attempted again when the lease ends
            log.exception("alert delivery %s failed unexpectedly", delivery.delivery_id)

    async def _deliver(self, delivery: Delivery) -> None:
        if await asyncio.to_thread(self.org_stopped, delivery.org_id):
            why = "not sent: the org is pending deletion"
            await asyncio.to_thread(self.outbox.skip, delivery, self.clock(), why)
            return
        try:
            target = await asyncio.to_thread(
                self.endpoints.target, delivery.org_id, delivery.endpoint_id
            )
        except AstralogError as exc:  # e.g. its secret cannot be opened: retried on schedule
            await self._finish(delivery, None, Outcome(None, exc.detail), 0.0)
            return
        if target is None or not target.enabled:
            why = "the endpoint was deleted" if target is None else "the endpoint is disabled"
            await asyncio.to_thread(self.outbox.skip, delivery, self.clock(), f"not sent: {why}")
            return
        started = time.monotonic()
        outcome = await self._attempt(target, delivery)
        await self._finish(delivery, target, outcome, time.monotonic() - started)

    async def _finish(
        self, delivery: Delivery, target: Target | None, outcome: Outcome, seconds: float
    ) -> None:
        self.metrics.seconds.labels(target.kind if target else "webhook").observe(seconds)
        attempt = Attempt(self.clock(), outcome.status, outcome.error, int(seconds * 1000))
        await asyncio.to_thread(self._settle, delivery, target, outcome, attempt)

    async def _attempt(self, target: Target, delivery: Delivery) -> Outcome:
        if target.kind == "email":
            if self.smtp is None:
                return Outcome(None, "no SMTP server is configured (ASTRALOG_ALERTS__SMTP_HOST)")
            subject, text = _email_text(delivery)
            return await send_email(self.smtp, target.target, subject, text, delivery.message_id)
        timestamp = int(self.clock() // 1_000_000_000)
        signed = signing.headers(delivery.message_id, timestamp, delivery.body, target.secrets)
        headers = {**target.headers, **signed}
        return await post_webhook(self.policy, target.target, headers, delivery.body)

    def _settle(
        self, delivery: Delivery, target: Target | None, outcome: Outcome, attempt: Attempt
    ) -> None:
        channel = target.kind if target else "webhook"
        if outcome.delivered:
            self.outbox.record(delivery, attempt, "delivered")
            self.metrics.attempts.labels(channel, "delivered").inc()
            return
        if outcome.status == 410 and target is not None:
            reason = "the receiver answered 410 Gone: it asked for no more deliveries"
            self.outbox.record(delivery, attempt, "failed")
            self.endpoints.disable(delivery.org_id, delivery.endpoint_id, reason, WORKER)
            self._failed(delivery, channel, outcome, "disabled", "endpoint disabled")
            return
        delay = self.retry.delay(delivery.round_attempts + 1, outcome.retry_after)
        if delay is None:
            self.outbox.record(delivery, attempt, "failed")
            made = delivery.round_attempts + 1
            self._failed(delivery, channel, outcome, "failed", f"gave up after {made} attempts")
            return
        self.outbox.record(delivery, attempt, "pending", attempt.at_ns + int(delay * 1e9))
        self._failed(delivery, channel, outcome, "retry", f"next attempt in {delay:.1f} s")

    def _failed(
        self, delivery: Delivery, channel: str, outcome: Outcome, result: str, then: str
    ) -> None:
        self.metrics.attempts.labels(channel, result).inc()
        log.warning(
            "alert delivery %s (message %s) to endpoint %s failed on attempt %d: %s; %s",
            delivery.delivery_id, delivery.message_id, delivery.endpoint_id,
            delivery.attempts + 1, outcome.error, then,
            extra={"org_id": delivery.org_id, "status": outcome.status, "result": result},
        )  # fmt: skip


def _email_text(delivery: Delivery) -> tuple[str, str]:
    payload: dict[str, Any] = json.loads(delivery.body)
    data = _mapping(payload.get("data"))
    name = str(_mapping(data.get("alert")).get("name", ""))
    kind = str(payload.get("type", f"alert.{delivery.event}"))
    subject = f"[Astralog] {kind}" + (f": {name}" if name else "")
    link = str(data.get("search_url", ""))
    text = f"{subject}\n\n{link}\n\n" + json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return subject, text


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def webhook_policy(settings: AlertsSettings) -> WebhookPolicy:
    return WebhookPolicy(
        allow_networks=tuple(settings.webhook_allow_private_networks),
        allow_http=settings.webhook_allow_http,
        timeout_seconds=settings.webhook_timeout_seconds,
        max_response_bytes=settings.webhook_max_response_bytes,
    )


def smtp_config(settings: AlertsSettings) -> SmtpConfig | None:
    if not settings.smtp_host:
        return None
    return SmtpConfig(
        settings.smtp_host, settings.smtp_port, settings.smtp_from or "astralog@localhost",
        settings.smtp_security, settings.smtp_username, settings.smtp_password,
        settings.smtp_timeout_seconds,
    )  # fmt: skip


def build_worker(
    outbox: Outbox, endpoints: EndpointDirectory, settings: AlertsSettings,
    registry: CollectorRegistry, org_stopped: Callable[[str], bool] = _never,
) -> DeliveryWorker:  # fmt: skip
    """The worker as ``ASTRALOG_ALERTS__*`` configures it; ``org_stopped``: is the org pending
    deletion (or deleted)."""
    retry = RetryPolicy(
        tuple(settings.retry_schedule_seconds), settings.retry_jitter,
        settings.retry_after_max_seconds,
    )  # fmt: skip
    return DeliveryWorker(
        outbox, endpoints, webhook_policy(settings), retry, DeliveryMetrics(registry),
        smtp=smtp_config(settings), concurrency=settings.delivery_concurrency,
        per_endpoint=settings.delivery_concurrency_per_endpoint,
        per_org=settings.delivery_concurrency_per_org,
        poll_seconds=settings.delivery_poll_seconds, log_days=settings.delivery_log_days,
        org_stopped=org_stopped, manual=ManualSends(
            settings.manual_sends_per_endpoint_per_minute, settings.manual_sends_per_org_per_minute
        ),
    )  # fmt: skip
