"""The FastAPI application: routes, problem documents, middleware and background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from astralog import __version__, org_purge, retention, scope_purge
from astralog.alerts.evaluate import Config as EvaluatorConfig
from astralog.alerts.evaluate import Evaluator
from astralog.api import problems
from astralog.api.middleware import AccessLog, BodyLimit, SecurityHeaders
from astralog.api.routes import (
    alerts,
    audit,
    auth,
    connectors,
    docs,
    elasticsearch,
    endpoints,
    erasures,
    exports,
    health,
    holds,
    ingest,
    me,
    members,
    org_deletion,
    orgs,
    passkeys,
    patterns,
    plans,
    saved_searches,
    search,
    session,
    sources,
    sso,
    tokens,
    ui,
)
from astralog.api.scrape import MetricsListener
from astralog.controlplane.checkpoints import Publisher, latest_org_checkpoints
from astralog.erasure_pass import run_erasures
from astralog.runtime import Runtime
from astralog.settings import Settings

log = logging.getLogger("astralog.api")
ADMIN_BODY_LIMIT = 64 * 1024


async def _checkpoints(runtime: Runtime) -> None:
    interval = runtime.settings.control.checkpoint_interval_seconds
    # Each org's newest checkpoint also goes into its own destination (first round at start,
    # so what the last shutdown signed leaves the machine too).
    publisher = Publisher(runtime.data.destination)
    while True:
        try:
            await publisher.publish(latest_org_checkpoints(runtime.control.store))
        except Exception:
            log.exception("publishing checkpoints failed")
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(runtime.signer.checkpoint, runtime.control.store)
        except Exception:
            log.exception("signing a checkpoint failed")


async def _credential_usage(runtime: Runtime) -> None:
    """Every node records when its credentials were used (the leader signs what they append)."""
    while True:
        await asyncio.sleep(runtime.settings.control.checkpoint_interval_seconds)
        try:
            await asyncio.to_thread(runtime.control.record_usage)
        except Exception:
            log.exception("recording credential use failed")


async def _deletions_due(runtime: Runtime) -> None:
    """After each retention pass: orgs, sources and connectors whose deletion grace is over."""
    await org_purge.purge_due(runtime, runtime.control.deletions)
    await scope_purge.purge_due(runtime, runtime.control.scope_deletions)


async def _alert_evaluator(runtime: Runtime) -> None:
    alerts = runtime.settings.alerts
    config = EvaluatorConfig(runtime.settings.server.url(), int(alerts.ingest_settle_seconds * 1e9),
                             alerts.max_groups, runtime.settings.query.engine_threads)  # fmt: skip
    evaluator = Evaluator(runtime.alert_rules, runtime.control.auth, runtime, runtime.outbox,
                          runtime.alert_state, config, metrics=runtime.metrics.alerts,
                          error_endpoints=runtime.alert_endpoints.for_errors)  # fmt: skip
    await evaluator.serve(alerts.evaluate_every_seconds)


async def _while_leading(
    runtime: Runtime, jobs: list[Callable[[], Coroutine[Any, Any, None]]]
) -> None:
    """Run ``jobs`` while this node leads (:mod:`astralog.leadership`; with SQLite, always),
    and stop them when it no longer does."""
    leadership, poll = runtime.leadership, runtime.settings.control.leader_poll_seconds
    running: list[asyncio.Task[None]] = []
    try:
        while True:
            leads = await asyncio.to_thread(leadership.holds)
            runtime.metrics.leader.set(1 if leads else 0)
            if leads and not running:
                if runtime.settings.control.database_url:
                    log.info("this node leads: it signs checkpoints and runs retention, "
                             "compaction, erasures and alert evaluation")  # fmt: skip
                running = [asyncio.create_task(job()) for job in jobs]
            elif running and not leads:
                log.warning("this node no longer leads: its checkpoints, retention, "
                            "compaction, erasures and alert evaluation stop")  # fmt: skip
                await _cancel(running)
                running = []
            await asyncio.sleep(poll)
    finally:
        await _cancel(running)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(runtime.restore_projections)  # never serve a hand-edited row
        data = await asyncio.to_thread(runtime.open_data_plane)  # WAL recovery happens here
        data.start()
        bind = runtime.settings.metrics.bind
        listener = MetricsListener(bind, runtime) if bind else None
        storage = runtime.settings.storage
        led: list[Callable[[], Coroutine[Any, Any, None]]] = [
            lambda: _checkpoints(runtime),
            lambda: _alert_evaluator(runtime),  # due alerts, one scan per window
            lambda: run_erasures(runtime, storage.erasure_interval_seconds),
            lambda: runtime.compactor().run(),  # cleans up even when not merging
            lambda: retention.run(
                runtime,
                storage.purge_interval_seconds,
                runtime.purge_schedule,
                lambda: _deletions_due(runtime),
            ),
        ]
        watch = runtime.control.store.watch(runtime.control.auth.clear)
        tasks = [
            asyncio.create_task(_while_leading(runtime, led)),
            asyncio.create_task(_credential_usage(runtime)),
            asyncio.create_task(exports.serve(runtime)),  # resumes interrupted exports
            asyncio.create_task(runtime.delivery.run()),  # alert webhooks and e-mail
        ]
        try:
            yield
        finally:
            await _cancel(tasks)
            watch.close()
            if listener is not None:
                listener.close()
            await runtime.close_data_plane()
            runtime.control.record_usage()
            if runtime.leadership.holds():
                runtime.signer.checkpoint(runtime.control.store)
            runtime.leadership.close()

    app = FastAPI(
        title="Astralog",
        version=__version__,
        summary="Event-sourced log analytics with bring-your-own storage.",
        lifespan=lifespan,
        docs_url=None,  # /docs is ours: Swagger UI from a package, under the UI's CSP
        redoc_url=None,
    )
    app.state.runtime = runtime
    problems.install(app)
    for module in (
        health, ingest, elasticsearch, session, orgs, sources, tokens, connectors, audit, search,
        patterns, members, plans, holds, org_deletion, erasures, endpoints, saved_searches, alerts,
        exports, auth, me, passkeys, sso, docs, ui,
    ):  # fmt: skip
        app.include_router(module.router)
    app.add_middleware(
        BodyLimit,
        default_limit=ADMIN_BODY_LIMIT,
        ingest_limit=settings.ingest.max_body_bytes,
        timeout=settings.server.body_timeout_seconds,
    )
    app.add_middleware(elasticsearch.ElasticsearchErrors)  # reshapes BodyLimit's 413 too
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app


__all__ = ["create_app"]
