"""Backtest: how often an alert, saved or not, would have fired over the last hours.

One scan, whatever the number of evaluations: the matches of the whole span are counted per
bucket (the gcd of the schedule's step and the window, at least a minute) and per group (the
``max_groups`` busiest, chosen in SQL as the evaluator does), then each evaluation's window is
summed from the buckets and the real state machine (:mod:`astralog.alerts.state`) runs over
them. The scan goes through the search planner with the caller's readable sources, so the plan's
scan budget and timeout bound its cost.

The whole span is always covered. When the schedule runs more often than
``alerts.backtest_max_evaluations`` times in it, the replay steps coarser: each replayed
evaluation stands for ``every`` consecutive runs (counted back from the newest) and takes the
value of the one of them closest to firing, so a burst between two replayed evaluations is not
skipped; ``pending_for`` then counts replayed evaluations. The answer says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from astralog.alerts.state import InstanceState, step
from astralog.controlplane.alert_rules import AlertSpec
from astralog.query.engine import Session, facet_value
from astralog.query.timerange import iso

S = 10**9
MAX_RUNS = 50_000  # scheduled runs a backtest reads at most (a week of 12-second intervals)


@dataclass(frozen=True)
class Runs:
    """The scheduled runs of the span, oldest first, replayed in groups of ``every``: each
    group's newest run is the replayed evaluation's time."""

    times: list[int]
    every: int
    truncated: bool = False  # more than MAX_RUNS in the span: the newest of them

    def __bool__(self) -> bool:
        return bool(self.times)

    @property
    def first(self) -> int:
        return self.times[0]

    @property
    def groups(self) -> list[list[int]]:
        """Counted back from the newest run, so the latest evaluation is always replayed."""
        cut = len(self.times) % self.every
        head = [self.times[:cut]] if cut else []
        rest = self.times[cut:]
        return head + [rest[i : i + self.every] for i in range(0, len(rest), self.every)]

    def covered(self) -> dict[str, Any]:
        """What the answer covered, in its own words."""
        out: dict[str, Any] = {
            "start": iso(self.times[0]), "end": iso(self.times[-1]),
            "scheduled_runs": len(self.times), "runs_per_evaluation": self.every,
        }  # fmt: skip
        if self.every > 1:
            out["note"] = (
                f"the schedule runs {len(self.times)} times in this span, more than the "
                f"backtest replays: each evaluation stands for {self.every} consecutive runs "
                "and takes the one closest to firing, so firings close together count once"
            )
        if self.truncated:
            out["note"] = (
                f"the schedule runs more than {MAX_RUNS} times in the span asked: the backtest "
                f"covers its newest {MAX_RUNS} runs"
            )
        return out


def evaluation_times(spec: AlertSpec, start_ns: int, end_ns: int, cap: int) -> Runs:
    """Every scheduled run in ``(start_ns, end_ns]`` (at most ``MAX_RUNS``, the newest), and
    how many of them each replayed evaluation stands for so that at most ``cap`` are replayed."""
    schedule = spec.schedule
    if spec.interval_seconds is not None:
        step_ns = spec.interval_seconds * S
        last = schedule.latest(end_ns)
        first = schedule.next_after(start_ns)
        newest = max(first, last - (MAX_RUNS - 1) * step_ns)
        times = list(range(newest, last + 1, step_ns))
        truncated = newest > first
    else:  # cron runs at most once a minute: a week is 10,080 runs
        times = []
        t = schedule.next_after(start_ns)
        while t <= end_ns and len(times) < MAX_RUNS:
            times.append(t)
            t = schedule.next_after(t)
        truncated = t <= end_ns
    return Runs(times, max(1, math.ceil(len(times) / max(1, cap))), truncated)


def bucket_ns(spec: AlertSpec, runs: Runs) -> int:
    times = runs.times
    gaps = [b - a for a, b in itertools.pairwise(times[:1441])] or [spec.window_seconds * S]
    seconds = math.gcd(*(g // S for g in gaps), spec.window_seconds)
    return max(60, seconds - seconds % 60 or 60) * S


def bucket_counts(
    session: Session, spec: AlertSpec, width_ns: int, origin_ns: int, max_groups: int
) -> dict[tuple[str, ...], dict[int, int]]:
    """Matches per group and bucket; "new match" buckets by receive time, the rest by event
    time. Only the ``max_groups`` groups with the most matches, kept by the engine."""
    where, params = session.plan.where()
    column = "ObservedTimestamp" if spec.condition == "new_match" else "Timestamp"
    params |= {"origin": origin_ns // 1000, "width": width_ns // 1000}
    groups = []
    for i, name in enumerate(spec.group_by):
        value, extra = facet_value(name)
        if extra:
            value = value.replace("$fk", f"$gk{i}")
            params[f"gk{i}"] = extra["fk"]
        groups.append(f"coalesce(CAST({value} AS VARCHAR), '') AS g{i}")
    keys = "".join(f"{g}, " for g in groups)
    counted = (
        f"SELECT {keys}(epoch_us({column}) - $origin) // $width AS b, count(*) AS n FROM logs "
        f"WHERE {where} GROUP BY ALL"
    )
    sql = counted
    if groups:
        names = ", ".join(f"g{i}" for i in range(len(groups)))
        sql = (
            f"WITH c AS ({counted}), top AS (SELECT {names} FROM c GROUP BY ALL "
            f"ORDER BY sum(n) DESC, {names} LIMIT {int(max_groups)}) "
            f"SELECT c.* FROM c JOIN top USING ({names})"
        )
    out: dict[tuple[str, ...], dict[int, int]] = {}
    for row in session.conn.execute(sql, params).fetchall():
        out.setdefault(tuple(str(v) for v in row[:-2]), {})[int(row[-2])] = int(row[-1])
    return out


def replay(
    spec: AlertSpec, runs: Runs, width_ns: int, origin_ns: int,
    counts: dict[tuple[str, ...], dict[int, int]],
) -> dict[str, Any]:  # fmt: skip
    """Run the state machine over every evaluation of every group: how often it would fire."""
    keys = list(counts) or ([()] if not spec.group_by else [])
    fired_at: list[dict[str, Any]] = []
    groups = runs.groups
    spans = _spans(spec, groups, runs.first, width_ns, origin_ns)
    size = max((last for windows in spans for _, last in windows), default=0)
    flat = [
        (_clamp(first, size), _clamp(last, size)) for windows in spans for first, last in windows
    ]
    ends = list(itertools.accumulate(len(windows) for windows in spans))
    pick = max if spec.condition in ("count_above", "new_match") else min
    policy = spec.policy
    for key in keys:
        total = _prefix(counts.get(key, {}), size)
        values = [total[last] - total[first] if last > first else 0 for first, last in flat]
        state, begin = InstanceState(), 0
        for group, end in zip(groups, ends, strict=True):
            value, begin = pick(values[begin:end]), end
            hit = spec.hit(value)
            if not hit and state.condition == "normal" and state.notified == "normal":
                continue  # a miss leaves a quiet instance as it is: no need to step it
            out = step(state, hit, group[-1], policy)
            state = out.state
            if out.transition is not None and out.transition.event == "firing":
                labels = dict(zip(spec.group_by, key, strict=True))
                fired_at.append({"at": iso(group[-1]), "labels": labels, "value": value})
    return {"fired": len(fired_at), "evaluations": len(groups), "firings": fired_at[:100]}


def _prefix(buckets: dict[int, int], size: int) -> list[int]:
    """``total[i]``: the matches of buckets ``0 <= b < i``, for any window sum in constant time."""
    dense = [0] * size
    for b, n in buckets.items():
        if 0 <= b < size:
            dense[b] = n
    return [0, *itertools.accumulate(dense)]


def _clamp(index: int, size: int) -> int:
    return min(size, max(0, index))


def _spans(
    spec: AlertSpec, groups: Sequence[Sequence[int]], first_run: int, width_ns: int,
    origin_ns: int,
) -> list[list[tuple[int, int]]]:  # fmt: skip
    """Per replayed evaluation, the bucket ranges whose sums are its candidate values: "new
    match" counts what was received since the previous evaluation; the others read the window
    of each run it stands for (the value closest to firing is taken)."""
    out = []
    previous = first_run - spec.window_seconds * S
    for group in groups:
        if spec.condition == "new_match":
            out.append([((previous - origin_ns) // width_ns, (group[-1] - origin_ns) // width_ns)])
        else:
            ends = [t - spec.evaluation_delay_seconds * S - origin_ns for t in group]
            out.append([((e - spec.window_seconds * S) // width_ns, e // width_ns) for e in ends])
        previous = group[-1]
    return out
