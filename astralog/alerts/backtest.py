"""Backtest: how often an alert, saved or not, would have fired over the last hours.

One scan, whatever the number of evaluations: the matches of the whole span are counted per
bucket (the gcd of the schedule's step and the window, at least a minute) and per group, then
each evaluation's window is summed from the buckets and the real state machine
(:mod:`astralog.alerts.state`) runs over them. The scan goes through the search planner with the
caller's readable sources, so the plan's scan budget and timeout bound its cost, and the number
of evaluations is capped (``alerts.backtest_max_evaluations``).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

from astralog.alerts.state import InstanceState, step
from astralog.controlplane.alert_rules import AlertSpec
from astralog.query.engine import Session, facet_value
from astralog.query.timerange import iso

S = 10**9


def evaluation_times(spec: AlertSpec, start_ns: int, end_ns: int, cap: int) -> list[int]:
    times: list[int] = []
    t = spec.schedule.next_after(start_ns)
    while t <= end_ns and len(times) < cap:
        times.append(t)
        t = spec.schedule.next_after(t)
    return times


def bucket_ns(spec: AlertSpec, times: list[int]) -> int:
    gaps = [b - a for a, b in itertools.pairwise(times)] or [spec.window_seconds * S]
    seconds = math.gcd(*(g // S for g in gaps), spec.window_seconds)
    return max(60, seconds - seconds % 60 or 60) * S


def bucket_counts(
    session: Session, spec: AlertSpec, width_ns: int, origin_ns: int, max_groups: int
) -> dict[tuple[str, ...], dict[int, int]]:
    """Matches per group and bucket; "new match" buckets by receive time, the rest by event time."""
    where, params = session.plan.where()
    column = "ObservedTimestamp" if spec.condition == "new_match" else "Timestamp"
    params |= {"origin": origin_ns // 1000, "width": width_ns // 1000}
    groups = []
    for i, name in enumerate(spec.group_by):
        value, extra = facet_value(name)
        if extra:
            value = value.replace("$fk", f"$gk{i}")
            params[f"gk{i}"] = extra["fk"]
        groups.append(f"coalesce(CAST({value} AS VARCHAR), '')")
    keys = "".join(f"{g}, " for g in groups)
    sql = (
        f"SELECT {keys}(epoch_us({column}) - $origin) // $width AS b, count(*) FROM logs "
        f"WHERE {where} GROUP BY ALL"
    )
    out: dict[tuple[str, ...], dict[int, int]] = defaultdict(dict)
    for row in session.conn.execute(sql, params).fetchall():
        key = tuple(str(v) for v in row[:-2])
        if key in out or len(out) < max_groups:
            out[key][int(row[-2])] = int(row[-1])
    return out


def replay(
    spec: AlertSpec, times: list[int], width_ns: int, origin_ns: int,
    counts: dict[tuple[str, ...], dict[int, int]],
) -> dict[str, Any]:  # fmt: skip
    """Run the state machine over every evaluation of every group: how often it would fire."""
    keys = list(counts) or ([()] if not spec.group_by else [])
    fired_at: list[dict[str, Any]] = []
    policy = spec.policy
    for key in keys:
        buckets = counts.get(key, {})
        state = InstanceState()
        previous = times[0] - spec.window_seconds * S if times else 0
        for t in times:
            value = _window_sum(spec, buckets, t, previous, width_ns, origin_ns)
            previous = t
            out = step(state, spec.hit(value), t, policy)
            state = out.state
            if out.transition is not None and out.transition.event == "firing":
                labels = dict(zip(spec.group_by, key, strict=True))
                fired_at.append({"at": iso(t), "labels": labels, "value": value})
    return {"fired": len(fired_at), "evaluations": len(times), "firings": fired_at[:100]}


def _window_sum(
    spec: AlertSpec, buckets: dict[int, int], t: int, previous: int, width_ns: int, origin_ns: int
) -> int:
    if spec.condition == "new_match":  # received since the previous evaluation
        first, last = (previous - origin_ns) // width_ns, (t - origin_ns) // width_ns
    else:
        end = t - spec.evaluation_delay_seconds * S
        first = (end - spec.window_seconds * S - origin_ns) // width_ns
        last = (end - origin_ns) // width_ns
    return sum(n for b, n in buckets.items() if first <= b < last)
