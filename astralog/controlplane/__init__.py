"""Control plane: commands -> events (hash-chained log) -> projections."""

# Every reader of the log (replay, verification) must know every event type: the modules that
# declare events beside their feature register them on import.
from astralog.controlplane import alert_rules as alert_rules
from astralog.controlplane import endpoints as endpoints
from astralog.controlplane import export_events as export_events
from astralog.controlplane import saved_searches as saved_searches
