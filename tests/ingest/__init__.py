"""Ingest parsing, one module per wire format and per normalise stage."""
