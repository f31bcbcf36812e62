"""The audit verifier: what a third party runs to prove the event log was not rewritten.

Stage: last, offline, read-only. ``verify`` needs only the SQLite file (opened read-only), the
public key and, ideally, the copies of org checkpoints held outside this machine
(:mod:`astralog.controlplane.checkpoints`): it recomputes every hash and link, checks every
signature, and names the first record that was edited, dropped or reordered. What it cannot prove
it says (``warnings``):

* records after the last checkpoint could be removed without trace; the checkpoint interval
  bounds that window, and a heartbeat re-signed every interval shows whether the log went quiet
  or its newest records and checkpoints were removed together (a stale heartbeat);
* removing the tail *with* its checkpoints is caught by the outside copies, and only by them.

Verdicts: ``intact`` (ok), ``unproven`` (nothing signed covers the log: no checkpoint at all,
an empty log included), ``tampered`` (also: a malformed row, a dropped append-only trigger, a
projection row the log does not give, an outside copy this database cannot match).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from astralog.controlplane.checkpoints import SignedCheckpoint
from astralog.controlplane.store import GENESIS, Recorded, connect, record_hash


def max_checkpoint_age(interval_seconds: float) -> timedelta:
    """How old the newest signature may get on a running server: its interval, plus as much
    again (at least a minute) for a slow round."""
    return timedelta(seconds=interval_seconds + max(interval_seconds, 60.0))


@dataclass
class OrgReport:
    """One org's own chain: what a tenant is told about its records."""

    records: int = 0
    checkpoints: int = 0
    outside_checkpoints: int = 0
    head_seq: int = 0
    proven_seq: int = 0
    proven_at: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    ok: bool = True
    verdict: Literal["intact", "unproven", "tampered"] = "intact"
    records: int = 0
    checkpoints: int = 0
    outside_checkpoints: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    proven_seq: int = 0
    proven_at: str | None = None
    unproven_records: int = 0
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    orgs: dict[str, OrgReport] = field(default_factory=dict)

    def fail(self, seq: int | None, problem: str) -> None:
        if self.ok:
            self.first_bad_seq = seq
        self.ok = False
        self.verdict = "tampered"
        self.problems.append(problem)

    def unproven(self, warning: str) -> None:
        if self.verdict == "intact":
            self.ok, self.verdict = False, "unproven"
        self.warnings.append(warning)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Stored:
    """Everything verification reads from the database, read in one go.

    Rows of the wrong shape (a type changed, a NULL, text that is not UTF-8) are not trusted:
    ``malformed`` names them, and the checks below skip them."""

    rows: list[Recorded]
    checkpoints: list[tuple[int, str, str, str]]
    org_checkpoints: list[SignedCheckpoint]
    org_links: dict[int, tuple[str, int, str]]
    heartbeat: tuple[int, str, str, str] | None
    triggers: frozenset[str] = frozenset()
    malformed: list[str] = field(default_factory=list)


Stored = _Stored  # what another backend's reader hands to ``verify_stored``


# The triggers that make the log append-only (store._SCHEMA): an attacker's first step is to drop
# them, and nothing Astralog does removes them.
APPEND_ONLY_TRIGGERS = tuple(
    f"{table}_no_{op}"
    for table in ("events", "checkpoints", "org_chain", "org_checkpoints")
    for op in ("update", "delete")
)


def _text(value: bytes) -> str | bytes:
    """SQLite text as str; text that is not UTF-8 stays bytes, and is then reported malformed."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


def _typed(row: Sequence[object], *kinds: type | tuple[type, ...]) -> bool:
    return len(row) == len(kinds) and all(
        isinstance(v, k) and not isinstance(v, bool) for v, k in zip(row, kinds, strict=True)
    )


def present_triggers(database: Path) -> frozenset[str]:
    """The trigger names in ``database`` now (read before anything re-creates them)."""
    conn = connect(database, read_only=True)
    try:
        return _triggers(conn)
    finally:
        conn.close()


def _triggers(conn: sqlite3.Connection) -> frozenset[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    return frozenset(str(r[0]) for r in rows)


def _read(database: Path) -> _Stored:
    conn = connect(database, read_only=True)
    conn.text_factory = _text
    try:
        malformed: list[str] = []
        rows = [Recorded(**dict(r)) for r in conn.execute("SELECT * FROM events ORDER BY seq")]
        return _Stored(
            rows,
            _checkpoint_rows(conn, malformed),
            _org_checkpoint_rows(conn, malformed),
            _org_links(conn, malformed),
            _heartbeat(conn, malformed),
            _triggers(conn),
            malformed,
        )
    finally:
        conn.close()


def _kept(
    rows: Iterable[Sequence[object]], kinds: tuple[Any, ...], what: str, bad: list[str]
) -> list[tuple[Any, ...]]:
    kept = []
    for row in rows:
        if _typed(row, *kinds):
            kept.append(tuple(row))
        else:
            bad.append(f"a row of {what} is malformed: {tuple(row)!r:.200}")
    return kept


def _checkpoint_rows(conn: sqlite3.Connection, bad: list[str]) -> list[tuple[int, str, str, str]]:
    rows = conn.execute("SELECT seq, hash, signature, at FROM checkpoints ORDER BY seq")
    return _kept(rows, (int, str, str, str), "checkpoints", bad)


def _org_checkpoint_rows(conn: sqlite3.Connection, bad: list[str]) -> list[SignedCheckpoint]:
    rows = conn.execute(
        "SELECT org_id, org_seq, hash, at, signature FROM org_checkpoints ORDER BY org_id, org_seq"
    )
    kept = _kept(rows, (str, int, str, str, str), "org_checkpoints", bad)
    return [SignedCheckpoint("org", o, s, h, a, sig) for o, s, h, a, sig in kept]


def _org_links(conn: sqlite3.Connection, bad: list[str]) -> dict[int, tuple[str, int, str]]:
    rows = conn.execute("SELECT seq, org_id, org_seq, org_hash FROM org_chain")
    return {s: (o, n, h) for s, o, n, h in _kept(rows, (int, str, int, str), "org_chain", bad)}


def _heartbeat(conn: sqlite3.Connection, bad: list[str]) -> tuple[int, str, str, str] | None:
    rows = conn.execute("SELECT seq, hash, signature, at FROM heartbeat").fetchall()
    kept = _kept(rows, (int, str, str, str), "heartbeat", bad)
    return kept[0] if kept else None


def verify(
    database: Path,
    public_key: Ed25519PublicKey,
    *,
    outside: Sequence[tuple[str, SignedCheckpoint]] = (),
    max_age: timedelta | None = None,
    now: datetime | None = None,
    triggers: frozenset[str] | None = None,
) -> Report:
    """Check the whole chain, every org chain, every checkpoint here and every copy ``outside``
    (``(where, checkpoint)`` pairs), the append-only triggers and that the projections are what
    the log gives; never writes to the database.

    ``max_age`` is how old the newest signature may be (the checkpoint interval plus slack)
    before the verifier warns that what came after it may have been removed. ``triggers`` are
    the trigger names read before anything opened the database for writing (opening it
    re-creates them); by default they are read here."""
    stored = _read(database)
    if triggers is not None:
        stored = replace(stored, triggers=triggers)
    return verify_stored(
        stored,
        public_key,
        outside=outside,
        max_age=max_age,
        now=now,
        projections=lambda rows, report: _verify_projections(database, rows, report),
    )


def verify_stored(
    stored: Stored,
    public_key: Ed25519PublicKey,
    *,
    outside: Sequence[tuple[str, SignedCheckpoint]] = (),
    max_age: timedelta | None = None,
    now: datetime | None = None,
    projections: Callable[[list[Recorded], Report], None] | None = None,
) -> Report:
    """:func:`verify` over what was read from any backend (SQLite or PostgreSQL);
    ``projections`` checks the stored projections against the well-formed records."""
    report = Report()
    hashes = _verify_chain(stored.rows, report)
    _verify_checkpoints(stored, hashes, public_key, report)
    chains = _verify_org_chains(stored, report)
    _verify_org_checkpoints(stored.org_checkpoints, outside, chains, public_key, report)
    _judge_freshness(stored, hashes, public_key, report, max_age, now or datetime.now(UTC))
    if projections is not None:
        projections([r for r in stored.rows if _malformed(r) is None], report)
    for problem in stored.malformed:
        report.fail(None, problem)
    _verify_triggers(stored.triggers, report)
    return report


def _verify_triggers(present: frozenset[str], report: Report) -> None:
    for name in APPEND_ONLY_TRIGGERS:
        if name not in present:
            report.fail(
                None,
                f"the append-only trigger {name} was dropped: the database was opened to edit "
                "or delete records (Astralog never removes it)",
            )


def _verify_projections(database: Path, rows: list[Recorded], report: Report) -> None:
    stored = connect(database, read_only=True)
    stored.text_factory = _text
    try:
        compare_projections(lambda table: _dump(stored, table), rows, report)
    finally:
        stored.close()


StoredTable = Callable[[str], dict[object, tuple[Any, ...]] | None]
"""A projection table's rows by their first column; None when it is missing or unreadable."""


def compare_projections(stored: StoredTable, rows: list[Recorded], report: Report) -> None:
    """Replay the log into an empty in-memory copy of the projections and compare: a row edited
    by hand (a token's scopes, an un-revoked key, an org's plan) shows as a difference."""
    from astralog.controlplane import projections

    rebuilt = sqlite3.connect(":memory:")
    try:
        rebuilt.executescript(projections.SCHEMA)
        for row in rows:
            try:
                projections.project(rebuilt, row)
            except (ValueError, TypeError, KeyError, sqlite3.DatabaseError) as exc:
                report.fail(row.seq, f"record {row.seq} does not replay: {exc}")
        for table in projections.TABLES:
            _compare_table(table, stored(table), _dump(rebuilt, table), report)
    finally:
        rebuilt.close()


def projection_differences(stored: StoredTable, rows: list[Recorded]) -> list[str]:
    """How the stored projections differ from a replay of ``rows``; empty when they agree."""
    report = Report()
    compare_projections(stored, rows, report)
    return report.problems


def _dump(conn: sqlite3.Connection, table: str) -> dict[object, tuple[Any, ...]] | None:
    try:
        return {row[0]: tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1")}
    except sqlite3.DatabaseError:
        return None


def _compare_table(
    table: str,
    stored: dict[object, tuple[Any, ...]] | None,
    rebuilt: dict[object, tuple[Any, ...]] | None,
    report: Report,
) -> None:
    if stored is None:
        report.fail(None, f"table {table} is missing or unreadable: projections were removed")
        return
    for key in sorted(set(stored) | set(rebuilt or {}), key=repr)[:1000]:
        here, replayed = stored.get(key), (rebuilt or {}).get(key)
        if here != replayed:
            what = (
                "is not in the log"
                if replayed is None
                else "is missing"
                if here is None
                else (f"differs from the log ({here!r:.200} stored, {replayed!r:.200} replayed)")
            )
            report.fail(None, f"table {table}: row {key!r:.80} {what}: edited outside the log")


def _malformed(row: Recorded) -> str | None:
    """Why a record read from the file is not a record Astralog wrote, if it is not."""
    for name, value in vars(row).items():
        kinds: tuple[type, ...] = (int,) if name in ("seq", "version") else (str,)
        if name == "org_id":
            kinds = (str, type(None))
        if isinstance(value, bytes):
            return f"its {name} is not UTF-8 text"
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"its {name} is {type(value).__name__}, not {kinds[0].__name__}"
    try:
        if not isinstance(json.loads(row.payload), dict):
            return "its payload is not a JSON object"
    except ValueError:
        return "its payload is not JSON"
    return None


def _verify_chain(rows: list[Recorded], report: Report) -> dict[int, str]:
    prev_seq, prev_hash = 0, GENESIS
    hashes: dict[int, str] = {}
    for row in rows:
        why = _malformed(row)
        if why is not None:
            seq = row.seq if isinstance(row.seq, int) else prev_seq + 1
            report.fail(seq, f"record {seq} is malformed: {why}")
            hashes[seq] = str(row.hash)
            prev_seq, prev_hash = seq, str(row.hash)
            continue
        if row.seq != prev_seq + 1:
            report.fail(prev_seq + 1, f"record {prev_seq + 1} is missing (dropped)")
        elif row.prev_hash != prev_hash:
            report.fail(
                row.seq,
                f"record {row.seq} does not follow record {prev_seq}: "
                "records were reordered or one before it was replaced",
            )
        if record_hash(row.prev_hash, row.hashed_fields()) != row.hash:
            report.fail(
                row.seq, f"record {row.seq} was edited: its content does not match its hash"
            )
        hashes[row.seq] = row.hash
        prev_seq, prev_hash = row.seq, row.hash
    report.records = len(rows)
    report.head_seq, report.head_hash = prev_seq, prev_hash
    return hashes


def _verify_checkpoints(
    stored: _Stored, hashes: dict[int, str], key: Ed25519PublicKey, report: Report
) -> None:
    for seq, head, signature, at in stored.checkpoints:
        report.checkpoints += 1
        timed = SignedCheckpoint("global", None, seq, head, at, signature)
        if not (timed.valid(key) or timed.valid_legacy(key)):
            report.fail(seq, f"checkpoint at record {seq} has an invalid signature")
        elif seq not in hashes:
            report.fail(seq, f"record {seq} is missing: a signed checkpoint covers it (dropped)")
        elif hashes[seq] != head:
            report.fail(seq, f"record {seq} differs from the signed checkpoint (history rewritten)")
        elif seq >= report.proven_seq:
            report.proven_seq, report.proven_at = seq, at if timed.valid(key) else None
    report.unproven_records = report.head_seq - report.proven_seq
    if not report.records and not stored.checkpoints:
        report.unproven(
            "the log holds no record and no signed checkpoint: nothing was proven (a running "
            "log has both from its first start: an empty one was wiped or never used)"
        )
    elif not stored.checkpoints:
        report.unproven(
            "no signed checkpoint: nothing proves these records were not rewritten or cut "
            "(a log always has one from its first start: checkpoints were deleted, or the log "
            "was never checkpointed)"
        )


# An org chain as rebuilt from the records: org_seq -> (global seq, org hash).
_OrgChain = dict[int, tuple[int, str]]


def _verify_org_chains(stored: _Stored, report: Report) -> dict[str, _OrgChain]:
    """Rebuild every org's chain from the records; the stored links must agree with it."""
    chains: dict[str, _OrgChain] = {}
    for row in stored.rows:
        if row.org_id is None or _malformed(row) is not None:
            continue
        chain = chains.setdefault(row.org_id, {})
        prev = chain[len(chain)][1] if chain else GENESIS
        org_seq = len(chain) + 1
        chain[org_seq] = (row.seq, record_hash(prev, row.org_hashed_fields(org_seq)))
        if stored.org_links.get(row.seq) != (row.org_id, org_seq, chain[org_seq][1]):
            report.fail(row.seq, f"record {row.seq}: its org chain link does not match it")
    for org_id, chain in chains.items():
        report.orgs[org_id] = OrgReport(records=len(chain), head_seq=len(chain))
    return chains


def _verify_org_checkpoints(
    local: list[SignedCheckpoint],
    outside: Sequence[tuple[str, SignedCheckpoint]],
    chains: dict[str, _OrgChain],
    key: Ed25519PublicKey,
    report: Report,
) -> None:
    here = {(c.org_id, c.seq): c for c in local}
    for checkpoint in local:
        _check_org_checkpoint("this database", checkpoint, chains, key, report)
    for where, checkpoint in outside:
        if checkpoint.kind != "org" or checkpoint.org_id is None:
            continue
        report.outside_checkpoints += 1
        if _check_org_checkpoint(where, checkpoint, chains, key, report) and (
            (checkpoint.org_id, checkpoint.seq) not in here
        ):
            report.fail(
                None,
                f"the checkpoint of org {checkpoint.org_id} at its record {checkpoint.seq} held "
                f"in {where} is missing from this database: checkpoints were deleted here",
            )


def _check_org_checkpoint(
    where: str,
    checkpoint: SignedCheckpoint,
    chains: dict[str, _OrgChain],
    key: Ed25519PublicKey,
    report: Report,
) -> bool:
    org_id, seq = str(checkpoint.org_id), checkpoint.seq
    org = report.orgs.setdefault(org_id, OrgReport())
    what = f"record {seq} of org {org_id}"
    if not checkpoint.valid(key):
        return _org_fail(report, org, None, f"checkpoint of {what} in {where}: invalid signature")
    chain = chains.get(org_id, {})
    if seq not in chain:
        return _org_fail(
            report,
            org,
            None,
            f"{what} is missing: the signed checkpoint in {where} covers it "
            f"(the org's log ends at its record {len(chain)}: records were cut)",
        )
    if chain[seq][1] != checkpoint.hash:
        problem = f"{what} (record {chain[seq][0]}) differs from the checkpoint in {where}"
        return _org_fail(report, org, chain[seq][0], problem + " (history rewritten)")
    org.checkpoints += where == "this database"
    org.outside_checkpoints += where != "this database"
    if seq >= org.proven_seq:
        org.proven_seq, org.proven_at = seq, checkpoint.at
    return True


def _org_fail(report: Report, org: OrgReport, seq: int | None, problem: str) -> bool:
    org.problems.append(problem)
    report.fail(seq, problem)
    return False


def _judge_freshness(
    stored: _Stored,
    hashes: dict[int, str],
    key: Ed25519PublicKey,
    report: Report,
    max_age: timedelta | None,
    now: datetime,
) -> None:
    """Warn when the newest signature is older than the checkpointer would leave it."""
    newest = _newest_signature(stored, hashes, key, report)
    if not report.records or max_age is None:
        return
    if newest is None:
        report.warnings.append("no checkpoint carries a signed time: freshness cannot be judged")
        return
    age = now - newest
    if age > max_age:
        report.warnings.append(
            f"the newest signature is from {newest.isoformat()} ({_age(age)} ago, more than "
            f"{_age(max_age)}): either the server was stopped since, or records written after "
            "it were removed together with their checkpoints; only copies outside this "
            "machine can tell"
        )


def _newest_signature(
    stored: _Stored, hashes: dict[int, str], key: Ed25519PublicKey, report: Report
) -> datetime | None:
    times = [datetime.fromisoformat(report.proven_at)] if report.proven_at else []
    if stored.heartbeat is not None:
        seq, head, signature, at = stored.heartbeat
        beat = SignedCheckpoint("heartbeat", None, seq, head, at, signature)
        if not beat.valid(key):
            report.fail(None, "the heartbeat has an invalid signature")
        elif seq and hashes.get(seq) != head:
            report.fail(seq, f"record {seq} differs from the signed heartbeat (cut or rewritten)")
        else:
            times.append(beat.moment())
            if seq >= report.proven_seq:
                report.proven_seq, report.proven_at = seq, at
            report.unproven_records = report.head_seq - report.proven_seq
    return max(times) if times else None


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"
