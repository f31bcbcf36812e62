"""Schema files (data only): the canonical log record, the ClickHouse DDL, the ingest JSON Schemas.

Installed as ``astralog.schemas``; read through :mod:`astralog.schema`.
"""
