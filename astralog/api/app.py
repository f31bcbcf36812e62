"""The FastAPI application: routes, problem documents, middleware and background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
            await asyncio.to_thread(runtime.control.record_usage)
            await asyncio.to_thread(runtime.signer.checkpoint, runtime.control.store)
        except Exception:
            log.exception("signing a checkpoint failed")


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


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(runtime.restore_projections)  # never serve a hand-edited row
        data = await asyncio.to_thread(runtime.open_data_plane)  # WAL recovery happens here
        data.start()
        bind = runtime.settings.metrics.bind
        listener = MetricsListener(bind, runtime) if bind else None
        tasks = [
            asyncio.create_task(_checkpoints(runtime)),
            asyncio.create_task(exports.serve(runtime)),  # resumes interrupted exports
            asyncio.create_task(runtime.delivery.run()),  # alert webhooks and e-mail
            asyncio.create_task(_alert_evaluator(runtime)),  # due alerts, one scan per window
            asyncio.create_task(
                run_erasures(runtime, runtime.settings.storage.erasure_interval_seconds)
            ),
            asyncio.create_task(runtime.compactor().run()),  # cleans up even when not merging
            asyncio.create_task(
                retention.run(
                    runtime,
                    runtime.settings.storage.purge_interval_seconds,
                    runtime.purge_schedule,
                    lambda: _deletions_due(runtime),
                )
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if listener is not None:
                listener.close()
            await runtime.close_data_plane()
            runtime.control.record_usage()
            runtime.signer.checkpoint(runtime.control.store)

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
