"""Schema files (data only): the canonical log record, the ClickHouse DDL, the ingest JSON Schemas.

Installed as ``astralog.schemas`` (see ``package-dir`` in pyproject.toml); read through
:mod:`astralog.schema`. Like ``connectors/``, the folder has one import name.
"""

if __name__ != "astralog.schemas":
    raise ImportError(
        f"the schemas/ folder is the package astralog.schemas; import it under that name, "
        f"not as {__name__!r} (install the project: pip install -e .)",
        name=__name__,
    )
