"""Ingest pipeline: decode -> normalise -> WAL -> flush -> connector."""
