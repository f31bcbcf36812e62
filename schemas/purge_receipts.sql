-- The signed receipts of retention purges of the orgs writing into this ClickHouse (written by
-- connectors/clickhouse): what each purge deleted, kept in the customer's own database.
--
-- Document is the receipt's JSON exactly as signed (astralog.controlplane.purge_receipts); a
-- receipt written twice is the same document, so ReplacingMergeTree keeps one.
CREATE TABLE IF NOT EXISTS ${database}.`astralog_receipts`
(
    `OrgId` LowCardinality(String),
    `Name` String,
    `Document` String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (OrgId, Name)
