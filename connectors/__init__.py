"""Storage connectors (installed as astralog.connectors)."""
