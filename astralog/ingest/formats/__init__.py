"""Ingest stage 1b, parse: request bodies in the wire formats shippers speak -> canonical Arrow.

One module per wire format, as Loki keeps ``push.go`` and ``otlp.go`` apart:

* ``json``: JSON events, as one object, an array of objects, or NDJSON (:func:`parse_json_events`);
* ``otlp``: OTLP/HTTP logs, protobuf or JSON encoding (:func:`parse_otlp_logs`);
* ``elasticsearch``: ``_bulk`` and single documents with per-item results (:func:`parse_es_bulk`,
  :func:`parse_es_document`, :func:`bulk_response`; ``BulkItem`` and ``EsBulk`` live there);
* ``loki``: Loki push, JSON or snappy-compressed protobuf (:func:`parse_loki_push`);
* ``common``: what they share (strict JSON loading, error texts, size and string limits).

A body that is not the declared format at all raises :class:`~astralog.errors.BadRequest` saying
where parsing failed. Bad events inside a valid body become rejects and every other event is
kept. Every format hands its events to :mod:`astralog.ingest.normalise`, which never imports
from here: imports run one way, formats -> normalise.

This package re-exports the six entry points the API routes call, listed in ``__all__``;
everything else is imported from the module that holds it.
"""

from astralog.ingest.formats.elasticsearch import bulk_response, parse_es_bulk, parse_es_document
from astralog.ingest.formats.json import parse_json_events
from astralog.ingest.formats.loki import parse_loki_push
from astralog.ingest.formats.otlp import parse_otlp_logs

__all__ = [
    "bulk_response",
    "parse_es_bulk",
    "parse_es_document",
    "parse_json_events",
    "parse_loki_push",
    "parse_otlp_logs",
]
