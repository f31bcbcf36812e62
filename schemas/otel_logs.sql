-- The ClickHouse table Astralog writes log batches into (read by connectors/clickhouse.py).
--
-- Columns: the OpenTelemetry Collector ClickHouse exporter's `otel_logs` (names, types, codecs),
-- so the exporter's dashboards and queries work on this table, in the canonical order of
-- schemas/log_record.json with the exporter's TimestampTime after Timestamp, plus:
--   ObservedTimestamp, EventId, OrgId, SourceId  the canonical record's extra columns;
--   BatchId  the batch (BatchKey.batch_id) a row was written with, so batches can be listed
--            and counted like objects in a bucket.
-- Timestamps carry an explicit 'UTC' zone: toDate/toStartOfHour then give UTC days and hours
-- whatever the server's timezone, the same partitions as dt=/hour= in a bucket.
--
-- PARTITION BY (OrgId, day): retention drops whole (org, day) partitions, a metadata-only
-- operation, and parts never mix tenants. The price is one partition per org and day; a BYOB
-- table usually holds one org, so that is one partition a day. A shared table with thousands of
-- orgs should drop OrgId from the key (retention then falls back to lightweight DELETE).
-- ORDER BY serves the queries we run: one org, one source or all, a service, a time range.
-- non_replicated_deduplication_window: a plain MergeTree deduplicates inserts by
-- insert_deduplication_token only when this is > 0 (it is 0 by default); a retried batch is then
-- stored once as long as fewer than this many inserts happened in between.
-- TTL is a backstop at the longest retention; per-org and per-source retention is enforced by
-- the connector's delete_expired. ttl_only_drop_parts: expired data leaves with whole parts.
--
-- Placeholders (string.Template): ${database} and ${table} are validated, quoted identifiers;
-- ${ttl_days} is a positive integer. Nothing else is substituted.
CREATE TABLE IF NOT EXISTS ${database}.${table}
(
    Timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime('UTC') DEFAULT toDateTime(Timestamp),
    ObservedTimestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    EventId String CODEC(ZSTD(1)),
    OrgId LowCardinality(String) CODEC(ZSTD(1)),
    SourceId LowCardinality(String) CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    BatchId LowCardinality(String) CODEC(ZSTD(1)),

    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    -- EventIds are UUIDv7, ordered by ingest time, which follows Timestamp: min/max per granule
    -- finds one event ("expand to the full event") at almost no storage cost.
    INDEX idx_event_id EventId TYPE minmax GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    -- Words of the body, folded as search folds them: hasToken(lower(Body), 'word') skips
    -- granules (astralog/query/tokens.py). A table created with the older idx_body (on Body
    -- itself) gets this index added by the connector; parts written before are not indexed
    -- until the operator runs ALTER TABLE ... MATERIALIZE INDEX idx_body_words.
    INDEX idx_body_words lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
)
ENGINE = MergeTree
PARTITION BY (OrgId, toDate(Timestamp))
PRIMARY KEY (OrgId, SourceId, ServiceName, TimestampTime)
ORDER BY (OrgId, SourceId, ServiceName, TimestampTime, Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay(${ttl_days})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000
