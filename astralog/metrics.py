"""Prometheus metrics of one process (a registry per runtime, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """No label names a tenant unless ``tenant_labels``: whoever scrapes would learn the ids."""

    def __init__(self, *, tenant_labels: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.tenant_labels = tenant_labels
        r = self.registry
        self.events_accepted = Counter(
            "astralog_ingest_events_accepted",
            "Events stored in the WAL and acknowledged (not replays or de-duplicated retries)",
            ["format"],
            registry=r,
        )
        self.events_rejected = Counter(
            "astralog_ingest_events_rejected", "Events refused", ["reason"], registry=r
        )
        self.bytes_accepted = Counter(
            "astralog_ingest_bytes_accepted", "Request bytes after decompression", registry=r
        )
        self.requests_refused = Counter(
            "astralog_ingest_requests_refused", "Whole requests refused", ["status"], registry=r
        )
        self.rate_limited = Counter(
            "astralog_ingest_rate_limited",
            "Requests refused by a rate limit",
            ["source"] if tenant_labels else [],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "astralog_ingest_ack_seconds",
            "Time from request to durable ack",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.wal_bytes = Gauge("astralog_wal_bytes", "Unflushed WAL bytes", registry=r)
        self.wal_segments = Gauge("astralog_wal_segments", "Unflushed WAL segments", registry=r)
        self.wal_oldest_seconds = Gauge(
            "astralog_wal_oldest_segment_age_seconds",
            "Age of the oldest unflushed segment",
            registry=r,
        )
        self.flush = FlushMetrics(r)
        self.compaction = CompactionMetrics(r)
        self.alert_outbox_rows = Gauge(
            "astralog_alert_outbox_rows",
            "Alert deliveries in the outbox by state (pending, delivering, delivered, failed)",
            ["state"],
            registry=r,
        )
        self.alerts = EvaluationMetrics(r)
        self.query_seconds = Histogram(
            "astralog_query_seconds", "Search latency", ["endpoint"], registry=r
        )
        self.auth_lookups = Counter(
            "astralog_auth_cache_lookups",
            "Credential lookups by whether this node's cache answered (hit) or the control "
            "plane's database did (miss)",
            ["result"],
            registry=r,
        )
        self.leader = Gauge(
            "astralog_leader",
            "1 while this node runs the jobs one node runs at a time (checkpoints, retention, "
            "compaction, erasures, alert evaluation)",
            registry=r,
        )

    def rate_limit_hit(self, source_id: str) -> None:
        counter = self.rate_limited.labels(source_id) if self.tenant_labels else self.rate_limited
        counter.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class FlushMetrics:
    """The flusher's instruments, handed to the flusher alone (it needs nothing else here)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.seconds = Histogram(
            "astralog_flush_seconds",
            "Duration of one flush pass over sealed WAL segments",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.batches = Counter("astralog_flush_batches", "Parquet batches committed", registry=r)
        self.failures = Counter(
            "astralog_flush_failures", "Flush attempts that failed", ["retryable"], registry=r
        )
        self.quarantined = Counter(
            "astralog_flush_quarantined",
            "Batches set aside in the WAL's quarantine/ directory: their data cannot be encoded",
            registry=r,
        )

    def failed(self, retryable: bool) -> None:
        self.failures.labels(retryable=str(retryable).lower()).inc()


class CompactionMetrics:
    """Compaction's instruments: merges by outcome, the batches merged and the bytes written."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.merges = Counter(
            "astralog_compaction_merges",
            "Compactions of one hour partition, by outcome (swapped, abandoned, failed)",
            ["outcome"],
            registry=r,
        )
        self.batches = Counter(
            "astralog_compaction_batches_merged",
            "Small batches merged into larger ones",
            registry=r,
        )
        self.bytes = Counter(
            "astralog_compaction_bytes_written", "Bytes of the compacted files written", registry=r
        )
        self.deleted = Counter(
            "astralog_compaction_objects_deleted",
            "Replaced objects deleted after the grace period",
            registry=r,
        )


class EvaluationMetrics:
    """The alert evaluator's instruments, handed to the evaluator alone."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.lag_seconds = Histogram(
            "astralog_alert_evaluation_lag_seconds",
            "Per shared scan: from the scheduled time of its longest-waiting alert to its "
            "evaluations committed (how far the evaluator runs behind its schedule)",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
        )
        self.evaluations = Counter(
            "astralog_alert_evaluations",
            "Alert evaluations by outcome: ok (committed), error (its data could not be read), "
            "paused (its owner lost access)",
            ["outcome"],
            registry=r,
        )

    def committed(self, evaluations: int, lag_ns: int) -> None:
        self.evaluations.labels("ok").inc(evaluations)
        self.lag_seconds.observe(max(0, lag_ns) / 1e9)

    def ended(self, outcome: str, evaluations: int = 1) -> None:
        self.evaluations.labels(outcome).inc(evaluations)
