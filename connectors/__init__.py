"""Storage connectors, installed as ``astralog.connectors`` (see ``package-dir`` in pyproject.toml).

The folder sits at the top of the repository, where people look for it, but has one import
name: imported as ``connectors`` (from the repository root, the folder is on ``sys.path``) it
would be a second copy of every module, whose ``ConnectorError`` an ``except`` on the real one
misses. So that name is refused here.
"""

if __name__ != "astralog.connectors":
    raise ImportError(
        f"the connectors/ folder is the package astralog.connectors; import it under that name, "
        f"not as {__name__!r} (install the project: pip install -e .)",
        name=__name__,
    )
