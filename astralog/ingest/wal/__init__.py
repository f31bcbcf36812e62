"""The write-ahead log: where an acknowledged event is durable before it reaches a destination.

Stage: gateway -> **WAL** -> flush -> connector. Ack means durable: an append returns only after
its rows (and its receipt, in the same record) are fsync'd; a crash keeps every acknowledged
append whole and drops only what was never acknowledged. One module per concept, downstream
first:

* :mod:`~astralog.ingest.wal.segment`: the segment file (Arrow IPC stream, one record batch per
  commit), sealing and the valid prefix of a torn file;
* :mod:`~astralog.ingest.wal.receipts`: receipts in a record's metadata and the ledger that
  keeps them beyond the WAL;
* :mod:`~astralog.ingest.wal.recovery`: the directory lock and what a crash left behind;
* :mod:`~astralog.ingest.wal.quarantine`: acknowledged rows no destination can take, kept
  aside with their reason instead of holding back their org;
* :mod:`~astralog.ingest.wal.writer`: :class:`WriteAheadLog`, its group-commit writer thread,
  the disk budget and the read side for the flusher and the query service.
"""

from astralog.ingest.wal.quarantine import Quarantine
from astralog.ingest.wal.receipts import Receipt, ReceiptLedger
from astralog.ingest.wal.segment import Segment
from astralog.ingest.wal.writer import PendingData, WalStats, WriteAheadLog

__all__ = [
    "PendingData",
    "Quarantine",
    "Receipt",
    "ReceiptLedger",
    "Segment",
    "WalStats",
    "WriteAheadLog",
]
