"""Log patterns: the matching events grouped into message templates by Drain.

Stage: plan -> engine -> **patterns**. The events come from the same plan as a search (the org
from the principal, the sources the caller may read, the retention clamp, deletion vectors, the
scan limit, BYOB destinations fetched and filtered like local Parquet), so a pattern never shows
an event that the search would hide.

Computed at query time over a bounded sample, not at flush time into a template column:

* no schema change: the Parquet and ``otel_logs`` layouts stay the OpenTelemetry ones customers
  read without us, and data written before this feature, or by a ClickHouse destination that
  another tool also writes, gets patterns too;
* templates depend on what is grouped together: Drain run over one search's events gives
  templates for *that* question, where a column frozen at flush time holds whatever the
  flusher's miner had learnt by then, per WAL segment, on every gateway replica separately;
* the cost is bounded whatever the range: at most :data:`SAMPLE_ROWS` bodies (a uniform
  reservoir sample of the matching events), each cut to :data:`MAX_TOKENS` tokens and
  :data:`MAX_BODY_CHARS` characters, mined for at most :data:`MINE_SECONDS`. Below the sample
  size the counts are exact; above it they are scaled from the sample and marked ``estimated``.

The clustering is drain3's (IBM's maintained implementation of Drain, He et al., ICWS 2017),
with masks for the parameters every log has (IPs, UUIDs, hex, numbers) applied first.

Each template comes with a filter in the search language that selects its events: the runs of
literal text between the template's parameters, each a term of whole words on the body (free
text is words, :mod:`astralog.query.tokens`), all of them required. A literal glued to a
parameter keeps a ``*`` inside that word (``<NUM>ms`` is ``*ms``). It selects *every* event of
the template (a superset: order between runs is not checked, a parameter may span any number of
words, and a more specific template's events may match it too).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drain3.drain import Drain
from drain3.masking import LogMasker, MaskingInstruction

from astralog.query.engine import Session
from astralog.query.language import DEFAULT_LIMITS
from astralog.query.timerange import iso
from astralog.query.tokens import is_word_character

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_TOKENS",
    "MINE_SECONDS",
    "SAMPLE_ROWS",
    "Miner",
    "Sample",
    "filter_for",
    "patterns",
    "sample",
]

SAMPLE_ROWS = 10_000
MAX_BODY_CHARS = 2_000
MAX_TOKENS = 100
MINE_SECONDS = 10.0
SPARK_BUCKETS = 24
FILTER_CHARS = 1_024  # room left in the query box for what the person typed
EXAMPLE_CHARS = 500
PARAM = "<*>"

# Parameters that vary in every log, masked before Drain sees the tokens; the names show in the
# template. Anchored on non-word neighbours so a number inside an identifier stays literal.
_EDGE_L, _EDGE_R = r"(?<![A-Za-z0-9_.])", r"(?![A-Za-z0-9_])"
MASKS: tuple[tuple[str, str], ...] = (
    (_EDGE_L + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
     + _EDGE_R, "UUID"),
    (_EDGE_L + r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?" + _EDGE_R, "IP"),
    (_EDGE_L + r"0x[0-9a-fA-F]+" + _EDGE_R, "HEX"),
    (_EDGE_L + r"[0-9a-f]{16,}" + _EDGE_R, "HEX"),
    (_EDGE_L + r"[-+]?\d+(?:\.\d+)?" + _EDGE_R, "NUM"),
)  # fmt: skip
_MASK_TOKEN = re.compile(r"<(?:\*|UUID|IP|HEX|NUM)>")


class Miner:
    """drain3's Drain with the masks: one message in, its cluster id out."""

    def __init__(self) -> None:
        self.masker = LogMasker([MaskingInstruction(p, name) for p, name in MASKS], "<", ">")
        # drain3's defaults (similarity 0.4, depth 4, 100 children per node), no cluster cap:
        # the sample bounds the number of clusters, and an evicted cluster would lose its count.
        self.drain = Drain(sim_th=0.4, depth=4, max_children=100, param_str=PARAM)

    def add(self, tokens: Sequence[str]) -> int:
        cluster, _ = self.drain.add_log_message(self.masker.mask(" ".join(tokens)))
        return int(cluster.cluster_id)

    def template(self, cluster_id: int) -> str:
        return str(self.drain.id_to_cluster[cluster_id].get_template())


def tokens_of(body: str) -> tuple[list[str], bool]:
    """The first :data:`MAX_TOKENS` whitespace-separated tokens, and whether the body was
    anything but those tokens joined by single spaces (other whitespace, or cut short)."""
    cut = body[:MAX_BODY_CHARS]
    tokens = cut.split(maxsplit=MAX_TOKENS)[:MAX_TOKENS]
    return tokens, len(cut) < len(body) or " ".join(tokens) != body


@dataclass(frozen=True)
class Sample:
    """Matching events' time and body, oldest first; how many matched, and had a body."""

    rows: list[tuple[int, str]]  # (epoch ms, body)
    events: int
    with_body: int

    @property
    def scale(self) -> float:
        return self.with_body / len(self.rows) if self.rows else 1.0

    @property
    def estimated(self) -> bool:
        return len(self.rows) < self.with_body


def sample(session: Session, rows: int | None = None) -> Sample:
    """Up to ``rows`` of the plan's events with a body, uniformly chosen, in the engine's thread.

    DuckDB applies ``USING SAMPLE`` before WHERE, so the sample is drawn from a subquery; the
    reservoir is seeded so the same data gives the same sample on one thread."""
    rows = SAMPLE_ROWS if rows is None else rows
    where, params = session.plan.where()
    counted = session.conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE Body <> '') FROM logs WHERE {where}", params
    ).fetchone()
    events, with_body = (int(counted[0]), int(counted[1])) if counted else (0, 0)
    sql = (
        "SELECT ts, body FROM (SELECT epoch_ms(Timestamp) AS ts, EventId AS id, "
        f"left(Body, {MAX_BODY_CHARS + 1}) AS body FROM logs WHERE {where} AND Body <> '') "
        f"USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE (17) ORDER BY ts, id"
    )
    picked = session.conn.execute(sql, params).fetchall()
    return Sample([(int(ts), str(body)) for ts, body in picked], events, with_body)


@dataclass
class _Cluster:
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    example: str = ""
    loose: bool = False  # some body was not its tokens joined by single spaces
    buckets: list[int] = field(default_factory=lambda: [0] * SPARK_BUCKETS)


@dataclass(frozen=True)
class _Axis:
    start_ms: int
    interval_ms: int

    def bucket(self, ts_ms: int) -> int:
        return min(SPARK_BUCKETS - 1, max(0, (ts_ms - self.start_ms) // self.interval_ms))


def mine(
    rows: Iterable[tuple[int, str]], axis: _Axis, deadline: float
) -> tuple[Miner, dict[int, _Cluster], int]:
    """Cluster the rows until ``deadline`` (monotonic); the miner, clusters and rows mined."""
    miner, clusters, mined = Miner(), dict[int, _Cluster](), 0
    for ts_ms, body in rows:
        if mined % 256 == 0 and time.monotonic() > deadline:
            break
        tokens, loose = tokens_of(body)
        cluster = clusters.setdefault(miner.add(tokens), _Cluster(first_ms=ts_ms))
        cluster.count += 1
        cluster.last_ms = ts_ms
        cluster.loose |= loose
        cluster.buckets[axis.bucket(ts_ms)] += 1
        if not cluster.example:
            cluster.example = body[:EXAMPLE_CHARS]
        mined += 1
    return miner, clusters, mined


def _escape(literal: str) -> str:
    return "".join(ch if ch.isalnum() else "\\" + ch for ch in literal)


_ANY = None  # a wildcard among the escaped literal pieces of a filter
_GAP = ""  # loose spacing between two tokens: any separators, not a parameter
_SPACE = "\\ "


def _pieces(token: str) -> list[str | None]:
    """A template token as escaped literals and wildcards: its masks are parameters."""
    out: list[str | None] = []
    for i, part in enumerate(_MASK_TOKEN.split(token)):
        if i:
            out.append(_ANY)
        if part:
            out.append(_escape(part))
    return out


def filter_for(template: str, *, loose: bool, budget: int = FILTER_CHARS) -> str:
    """The search-language clause that selects the template's events (see the module doc).

    Tokens are joined by an escaped space, or by ``*`` when some body of the template was
    spaced otherwise. Substring semantics make any prefix a superset, so a long template is cut
    at a token boundary to fit ``budget`` characters."""
    pieces: list[str | None] = []
    for token in template.split():
        joiner: list[str | None] = [_GAP if loose else _SPACE] if pieces else []
        more = joiner + _pieces(token)
        if len("body:") + len(_text(pieces + more)) > budget:
            break
        pieces += more
    terms = _terms(pieces)
    if not terms:
        return "body:*"  # nothing literal: any event with a message
    return "body:" + (terms[0] if len(terms) == 1 else "(" + " ".join(terms) + ")")


def _text(pieces: list[str | None]) -> str:
    terms = _terms(pieces)
    return "(" + " ".join(terms) + ")"


def _terms(pieces: list[str | None]) -> list[str]:
    """One term per run of literal pieces between parameters and loose gaps; runs without a
    word are dropped (free text needs one), a word glued to a parameter gets a ``*``."""
    runs: list[tuple[bool, list[str], bool]] = []
    glued, run = False, list[str]()
    for piece in [*pieces, _GAP]:
        if piece is _ANY or piece == _GAP:
            if run:
                runs.append((glued, run, piece is _ANY))
            glued, run = piece is _ANY, []
        else:
            run.append(piece)
    return [term for term in (_term(*r) for r in runs) if term]


def _term(after_parameter: bool, run: list[str], before_parameter: bool) -> str:
    while run and run[0] == _SPACE:  # a spaced parameter leaves whole words on this side
        run, after_parameter = run[1:], False
    while run and run[-1] == _SPACE:
        run, before_parameter = run[:-1], False
    text = "".join(run)
    plain = re.sub(r"\\(.)", r"\1", text)
    if not any(is_word_character(ch) for ch in plain):
        return ""
    if plain.lower() in ("and", "or", "not"):
        text = "\\" + text  # an escaped letter keeps the word from reading as an operator
    head = "*" if after_parameter and is_word_character(plain[0]) else ""
    tail = "*" if before_parameter and is_word_character(plain[-1]) else ""
    return head + text + tail


def combined(query: str, clause: str) -> str | None:
    """``query`` narrowed to the clause, or None when the two do not fit in one query."""
    text = f"({query}) {clause}" if query.strip() else clause
    return text if len(text) <= DEFAULT_LIMITS.max_length else None


def patterns(
    sample_: Sample, query: str, start_ns: int, end_ns: int, limit: int, seconds: float
) -> dict[str, Any]:
    """The answer's patterns part: the ``limit`` largest templates, most events first."""
    span_ms = max(1, (end_ns - start_ns) // 1_000_000)
    axis = _Axis(start_ns // 1_000_000, max(1, math.ceil(span_ms / SPARK_BUCKETS)))
    miner, clusters, mined = mine(sample_.rows, axis, time.monotonic() + seconds)
    scale = sample_.with_body / mined if mined and mined < sample_.with_body else 1.0
    budget = max(16, min(FILTER_CHARS, DEFAULT_LIMITS.max_length - len(query) - 3))
    ranked = sorted(clusters.items(), key=lambda kv: (-kv[1].count, kv[0]))
    shown = [_view(miner, cid, c, scale, query, budget, mined) for cid, c in ranked[:limit]]
    rest = sum(c.count for _, c in ranked[limit:])
    return {
        "patterns": shown,
        "templates": len(clusters),
        "other": round(rest * scale),
        "events": sample_.events,
        "with_body": sample_.with_body,
        "sampled": len(sample_.rows),
        "mined": mined,
        "estimated": scale != 1.0,
        "sparkline": {
            "start": iso(axis.start_ms * 1_000_000),
            "interval_ms": axis.interval_ms,
            "buckets": SPARK_BUCKETS,
        },
        "notes": _notes(sample_, mined, seconds),
    }


def _view(
    miner: Miner, cid: int, c: _Cluster, scale: float, query: str, budget: int, mined: int
) -> dict[str, Any]:
    template = miner.template(cid)
    clause = filter_for(template, loose=c.loose, budget=budget)
    return {
        "template": template,
        "count": round(c.count * scale),
        "share": round(c.count / mined, 4),
        "first_seen": iso(c.first_ms * 1_000_000),
        "last_seen": iso(c.last_ms * 1_000_000),
        "sparkline": [round(n * scale) for n in c.buckets],
        "filter": clause,
        "query": combined(query, clause),
        "example": c.example,
    }


def _notes(sample_: Sample, mined: int, seconds: float) -> list[str]:
    notes = []
    if len(sample_.rows) < sample_.with_body:
        notes.append(
            f"counts are estimated from a uniform sample of {len(sample_.rows):,} of the "
            f"{sample_.with_body:,} matching events; first and last seen are the sample's"
        )
    if mined < len(sample_.rows):
        notes.append(
            f"grouping stopped after {mined:,} of {len(sample_.rows):,} sampled events at the "
            f"{seconds:.0f} s limit; counts are scaled from those"
        )
    if sample_.events > sample_.with_body:
        notes.append(f"{sample_.events - sample_.with_body:,} matching events have no message")
    return notes
