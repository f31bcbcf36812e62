"""The ``patterns`` scenario: grouping accuracy of the Patterns view on Loghub's labelled logs.

Loghub (github.com/logpai/loghub) ships, for 16 systems, 2,000 log lines each with the message
part split out and a hand-labelled template per line (``<System>_2k.log_structured.csv``:
``Content``, ``EventId``). Each system's messages go, in file order, through exactly the code the
API groups with (:class:`astralog.query.patterns.Miner` after :func:`~astralog.query.patterns.
tokens_of`: drain3 with Astralog's masks and settings, nothing tuned per system), and are scored
with the metric of the Loghub benchmark (Zhu et al., ICSE-SEIP 2019), *grouping accuracy*: a
message counts as correct only when the set of messages grouped with it is exactly the set that
shares its labelled template. The figure is the mean over the systems, each also reported.

The corpus is not downloaded here (the benchmark machine reaches package registries only):
pass a checkout, ``git clone https://github.com/logpai/loghub`` then
``python -m bench --scenario patterns --loghub loghub``.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from astralog.query.patterns import Miner, tokens_of

__all__ = ["grouping_accuracy", "run_patterns"]

SUFFIX = "_2k.log_structured.csv"


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[int]) -> float:
    """Share of messages whose predicted group is exactly their labelled group."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, cluster in enumerate(predicted):
        members[cluster].append(i)
    labelled = Counter(truth)
    correct = 0
    for lines in members.values():
        labels = {truth[i] for i in lines}
        if len(labels) == 1 and labelled[next(iter(labels))] == len(lines):
            correct += len(lines)
    return correct / len(truth) if truth else 0.0


def _system(path: Path) -> tuple[float, int, float]:
    """One system's accuracy, message count and grouping seconds."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    truth = [row["EventId"] for row in rows]
    miner = Miner()
    started = time.perf_counter()
    predicted = [miner.add(tokens_of(row["Content"])[0]) for row in rows]
    return grouping_accuracy(truth, predicted), len(rows), time.perf_counter() - started


def run_patterns(loghub: Path | None) -> dict[str, Any]:
    if loghub is None or not loghub.is_dir():
        return {"unavailable": "no Loghub checkout: pass --loghub DIR (git clone of logpai/loghub)"}
    files = sorted(loghub.glob(f"*/*{SUFFIX}"))
    if not files:
        return {"unavailable": f"no */*{SUFFIX} under {loghub}: is it a Loghub checkout?"}
    per: dict[str, float] = {}
    messages, seconds = 0, 0.0
    for path in files:
        accuracy, n, took = _system(path)
        per[path.name.removesuffix(SUFFIX)] = round(accuracy, 4)
        messages, seconds = messages + n, seconds + took
    return {
        "grouping_accuracy_mean": round(statistics.mean(per.values()), 4),
        "systems": len(per),
        "messages": messages,
        "messages_per_second": round(messages / seconds) if seconds else 0,
        **{f"accuracy {name}": value for name, value in per.items()},
    }
