"""A tenant's audit export, and the offline verifier that needs only it and the public key.

Each NDJSON line is one of the org's records in its org's own chain (``seq`` is the org's
sequence number, ``hash``/``prev_hash`` link the org's records only, so nothing about other
tenants shows). A record covered by a signed org checkpoint carries it (``checkpoint``), and the
last line carries ``export_end``: the head of the export signed when it was written, so cutting
lines off the end of the file is caught too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from astralog.controlplane.audit_verify import Report
from astralog.controlplane.checkpoints import SignedCheckpoint
from astralog.controlplane.store import GENESIS, ORG_FIELDS, OrgLink, Recorded, record_hash

CHAIN = "org"


def org_view(record: Recorded, link: OrgLink) -> dict[str, Any]:
    """A record as its org sees it: no global sequence number, no global hash."""
    return {
        "chain": CHAIN,
        "seq": link.org_seq,
        "org_id": record.org_id,
        "type": record.type,
        "aggregate_id": record.aggregate_id,
        "version": record.version,
        "actor": record.actor,
        "client": record.client,
        "at": record.at,
        "payload": json.loads(record.payload),
        "hash": link.org_hash,
        "prev_hash": link.org_prev_hash,
    }


def _fields(line: dict[str, Any]) -> dict[str, Any]:
    """The hashed fields of an exported record, as the org chain hashed them."""
    values = {name: line[name] for name in ORG_FIELDS[1:] if name != "payload"}
    values["payload"] = json.dumps(
        line["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return {"org_seq": line["seq"]} | values


_REQUIRED = ("seq", "hash", "prev_hash", "payload", *ORG_FIELDS[1:])
# Every other field of a line is unsigned: one the verifier does not know is refused, so nothing
# unproven rides along in a file that verifies.
_ALLOWED = frozenset((*_REQUIRED, "chain", "checkpoint", "export_end"))
_TEXT = ("hash", "prev_hash", "type", "aggregate_id", "actor", "client", "at", "org_id")


@dataclass
class _State:
    org_id: str | None = None
    first: int = 0
    seq: int = 0
    hash: str = GENESIS
    ended: bool = False
    after: int = 0


def verify_export(lines: Iterable[str], key: Ed25519PublicKey) -> Report:
    """Verify an org's export: every hash and link, every checkpoint and the signed end."""
    report, state = Report(), _State()
    for number, text in enumerate(lines, start=1):
        if text.strip():
            _check_line(number, text, state, key, report)
    report.head_seq, report.head_hash = state.seq, state.hash
    report.unproven_records = state.seq - report.proven_seq
    if not report.records and report.ok:
        report.unproven("the export holds no record: nothing was proven")
    if state.seq and not state.ended:
        report.fail(
            state.seq,
            f"the export ends at record {state.seq} without its signed end: "
            "the records after it were cut off",
        )
    elif state.ended:
        _check_start(state, report)
    return report


def _check_start(state: _State, report: Report) -> None:
    """A whole export starts at record 1; a partial one where its signed end says it does."""
    if state.first == state.after + 1:
        if state.after:
            report.warnings.append(
                f"a partial export: it starts after record {state.after} (as its signed end "
                "says); the records before it are not checked"
            )
        return
    expected = f"after record {state.after}" if state.after else "at record 1"
    cut = f"records {state.after + 1}..{state.first - 1}" if state.first > state.after + 1 else ""
    report.fail(
        state.first,
        f"the export starts at record {state.first}, its signed end says {expected}: "
        f"{cut or 'records'} were cut from its start",
    )


def _malformed(line: object) -> str | None:
    """Why a line is not an exported record, if it is not."""
    if not isinstance(line, dict) or any(name not in line for name in _REQUIRED):
        return "is not an audit record of an org export"
    unknown = sorted(set(line) - _ALLOWED)
    if unknown:
        return f"has fields no hash or signature covers ({', '.join(map(str, unknown))[:200]})"
    seq, version = line["seq"], line["version"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, version)):
        return "has a seq or version that is not a number"
    if not all(isinstance(line[name], str) for name in _TEXT):
        return "has a field of the wrong type"
    return None


def _check_line(
    number: int, text: str, state: _State, key: Ed25519PublicKey, report: Report
) -> None:
    try:
        line = json.loads(text)
    except ValueError:
        line = None
    why = _malformed(line)
    if why is not None or not isinstance(line, dict):
        report.fail(None, f"line {number} {why or 'is not JSON'}")
        return
    if line.get("chain") != CHAIN:
        report.fail(None, f"line {number}: not an org export (the operator's export is global)")
        return
    seq = line["seq"]
    if state.ended:
        report.fail(seq, f"record {seq} comes after the signed end of the export: it was added")
    _check_link(line, state, report)
    if record_hash(line["prev_hash"], _fields(line)) != line["hash"]:
        report.fail(seq, f"record {seq} was edited: its content does not match its hash")
    state.org_id = state.org_id or line["org_id"]
    state.seq, state.hash = seq, line["hash"]
    report.records += 1
    if "checkpoint" in line:
        _check_signed(line, line["checkpoint"], "org", key, report)
    if "export_end" in line:
        end = _check_signed(line, line["export_end"], "export", key, report)
        state.ended, state.after = end is not None, end.after if end else 0


def _check_link(line: dict[str, Any], state: _State, report: Report) -> None:
    seq = line["seq"]
    if state.org_id is not None and line["org_id"] != state.org_id:
        report.fail(seq, f"record {seq} belongs to org {line['org_id']}, not {state.org_id}")
    if state.seq == 0:
        state.first = seq  # judged against the signed end (_check_start)
    elif seq != state.seq + 1:
        missing = f"records {state.seq + 1}..{seq - 1}" if seq > state.seq + 2 else None
        report.fail(
            state.seq + 1,
            f"{missing or f'record {state.seq + 1}'} missing (dropped) before record {seq}",
        )
    elif line["prev_hash"] != state.hash:
        report.fail(seq, f"record {seq} does not follow record {state.seq}: reordered or replaced")


def _check_signed(
    line: dict[str, Any], doc: object, kind: str, key: Ed25519PublicKey, report: Report
) -> SignedCheckpoint | None:
    seq = line["seq"]
    try:
        signed = SignedCheckpoint.from_document(doc)
    except ValueError as exc:
        report.fail(seq, f"record {seq}: its {kind} signature is malformed ({exc})")
        return None
    if signed.kind != kind or signed.org_id != line["org_id"] or signed.seq != seq:
        report.fail(seq, f"record {seq}: the signed {kind} names another record or org")
    elif not signed.valid(key):
        report.fail(seq, f"record {seq}: its {kind} signature is invalid")
    elif signed.hash != line["hash"]:
        report.fail(seq, f"record {seq} differs from its signed {kind} (history rewritten)")
    else:
        report.checkpoints += kind == "org"
        if seq >= report.proven_seq:
            report.proven_seq, report.proven_at = seq, signed.at
        return signed
    return None
