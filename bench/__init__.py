"""The Astralog benchmark harness (``make bench``, ``python -m bench``).

The product measured against the raw engines doing the bare minimum on the same data in the same
run (BRIEF section 7): ingest vs pyarrow/DuckDB NDJSON -> Parquet, search vs DuckDB SQL over the
same files, storage vs NDJSON, freshness from ack to searchable, memory under steady load.

Modules follow the run: ``corpus`` (seeded events, cached request bodies) -> ``gateway`` (the
server under test, as a subprocess) -> one module per scenario -> ``report``.
"""
