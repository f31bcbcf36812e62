"""Plans as data: what each plan allows. Defined as PlanDefined events at first start.

Enterprise orgs may carry per-org overrides of any of these limits (OrgPlanChanged).
"""

from __future__ import annotations

from typing import Any

LIMIT_HELP: dict[str, str] = {
    "retention_days": "Longest time events are kept and searchable.",
    "max_sources": "Most sources an org may create.",
    "ingest_events_per_second": "Sustained ingest rate per org (token bucket refill).",
    "ingest_bytes_per_second": "Sustained ingest bytes per org, uncompressed.",
    "source_events_per_second": "Sustained ingest rate of any one source.",
    "source_bytes_per_second": "Sustained ingest bytes of any one source, uncompressed.",
    "ingest_burst_seconds": "Burst size of the ingest token buckets, in seconds of the rate.",
    "byob": "Whether the org may use its own bucket or ClickHouse.",
    "max_query_range_days": "Longest time range of one query.",
    "query_timeout_seconds": "A query running longer is cancelled.",
    "max_scan_bytes": "Most bytes one query may read from storage.",
}

DEFAULT_PLANS: dict[str, dict[str, Any]] = {
    "free": {
        "retention_days": 3,
        "max_sources": 3,
        "ingest_events_per_second": 2_000,
        "ingest_bytes_per_second": 2 * 2**20,
        "source_events_per_second": 2_000,
        "source_bytes_per_second": 2 * 2**20,
        "ingest_burst_seconds": 5,
        "byob": False,
        "max_query_range_days": 3,
        "query_timeout_seconds": 10,
        "max_scan_bytes": 2 * 2**30,
    },
    "pro": {
        "retention_days": 30,
        "max_sources": 50,
        "ingest_events_per_second": 50_000,
        "ingest_bytes_per_second": 50 * 2**20,
        "source_events_per_second": 25_000,
        "source_bytes_per_second": 25 * 2**20,
        "ingest_burst_seconds": 5,
        "byob": True,
        "max_query_range_days": 30,
        "query_timeout_seconds": 30,
        "max_scan_bytes": 50 * 2**30,
    },
    "enterprise": {
        "retention_days": 365,
        "max_sources": 1_000,
        "ingest_events_per_second": 500_000,
        "ingest_bytes_per_second": 500 * 2**20,
        "source_events_per_second": 250_000,
        "source_bytes_per_second": 250 * 2**20,
        "ingest_burst_seconds": 5,
        "byob": True,
        "max_query_range_days": 365,
        "query_timeout_seconds": 120,
        "max_scan_bytes": 1024 * 2**30,
    },
}
