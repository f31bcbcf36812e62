-- The signed audit checkpoints of the orgs writing into this ClickHouse (read by
-- connectors/clickhouse.py): the copy of each org's history proof that lives in the customer's
-- own database, out of the reach of whoever runs Astralog.
--
-- Document is the checkpoint's JSON exactly as signed (astralog.controlplane.checkpoints); a
-- checkpoint written twice is the same document, so ReplacingMergeTree keeps one.
CREATE TABLE IF NOT EXISTS ${database}.`astralog_checkpoints`
(
    `OrgId` LowCardinality(String),
    `Seq` UInt64,
    `Document` String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (OrgId, Seq)
