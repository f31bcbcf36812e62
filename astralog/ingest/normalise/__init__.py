"""Ingest stage 2, normalise: events of any wire format -> canonical log records, in bulk.

Every format ends here. Free-form JSON arrives as an Arrow table read by pyarrow's JSON reader
(or, for the few lines that reader refuses, built from Python objects by
:func:`~astralog.ingest.normalise.objects.table_from_objects`); OTLP and Loki arrive as columns.
The table is mapped onto :func:`astralog.schema.log_schema` column by column with
pyarrow.compute and numpy: nothing on the hot path walks events one by one.

What this stage promises: the output table has exactly the canonical schema, holds the accepted
events in input order, and every refused event is reported with its position and a reason a
person can act on (naming the ``ASTRALOG_INGEST__*`` setting when a limit was hit).

The modules, each importing only those above it:

* ``records``: the shapes every parser returns (:class:`Parsed`, ``Reject``, ``Problem``,
  ``EventRefused``, :class:`NormaliseContext`) and the well-known field names;
* ``arrays``: map columns and masks; ``event_ids``: UUIDv7 in bulk;
* ``text``: values -> text; ``timestamps``: times of any spelling -> nanoseconds;
  ``severity``: the one level mapping; ``objects``: Python objects -> table, per-event checks;
* ``draft``: canonical columns of candidate events and :func:`~.draft.finish`;
* ``fields``: a table of free-form JSON events -> a draft.

This package re-exports only :class:`NormaliseContext` and :class:`Parsed`, which the API routes
build and read; everything else is imported from the module that holds it.
"""

from astralog.ingest.normalise.records import NormaliseContext, Parsed

__all__ = ["NormaliseContext", "Parsed"]
