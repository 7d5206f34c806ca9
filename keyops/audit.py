"""The hash-chained audit log.

Every state change of a key appends one event in the same transaction as the
change. Each event stores the hash of the one before it, and its own hash over
its content and that link, so editing, deleting, reordering or inserting an
event breaks the chain at a place ``verify`` can name. The single
``audit_head`` row is locked by each appender, so concurrent writers (several
CLI runs, several daemons) extend one chain in turn; ``prev_hash`` is unique,
so a fork is impossible even if that lock were bypassed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from keyops.domain.ids import uuid7
from keyops.domain.redact import redact
from keyops.inventory.models import AuditEvent, AuditHead
from keyops.inventory.types import storable, utcnow

GENESIS_HASH = "0" * 64
_SECRETISH_FIELDS = ("secret", "password", "token", "plaintext", "secretaccesskey", "secret_access_key")


def _scrub(value: Any, field_name: str = "") -> Any:
    """Defence in depth for invariant 1: no key material in an audit record,
    even if a caller passes it by mistake. Strings are also made storable
    here, before the event is hashed, so the chain covers what is stored."""
    lowered = field_name.lower().replace("-", "_")
    if isinstance(value, str):
        if any(s in lowered for s in _SECRETISH_FIELDS) and not lowered.endswith(("_hash", "_id", "_prefix")):
            return "[redacted]"
        return redact(storable(value))
    if isinstance(value, Mapping):
        return {storable(str(k)): _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, field_name) for v in value]
    return value


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def compute_hash(
    *,
    seq: int,
    event_id: str,
    at: datetime,
    actor: str,
    action: str,
    key_id: str | None,
    key_name: str | None,
    reason: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    content = orjson.dumps(
        {
            "seq": seq,
            "id": event_id,
            "at": _iso(at),
            "actor": actor,
            "action": action,
            "key_id": key_id,
            "key_name": key_name,
            "reason": reason,
            "details": details,
            "prev_hash": prev_hash,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + content).hexdigest()


def hash_of(event: AuditEvent) -> str:
    """The hash an event must carry, recomputed from its stored content."""
    return compute_hash(
        seq=event.seq,
        event_id=event.id,
        at=event.at,
        actor=event.actor,
        action=event.action,
        key_id=event.key_id,
        key_name=event.key_name,
        reason=event.reason,
        details=event.details,
        prev_hash=event.prev_hash,
    )


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    key_id: str | None = None,
    key_name: str | None = None,
    reason: str = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event inside the caller's transaction (commit is theirs)."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    at = utcnow()
    clean_details = _scrub(dict(details or {}))
    clean_reason = _scrub(reason)
    event = AuditEvent(
        seq=head.seq + 1,
        id=uuid7(),
        at=at,
        actor=actor,
        action=action,
        key_id=key_id,
        key_name=key_name,
        reason=clean_reason,
        details=clean_details,
        prev_hash=head.hash,
    )
    event.hash = hash_of(event)
    session.add(event)
    head.seq = event.seq
    head.hash = event.hash
    session.flush()
    return event


@dataclass
class VerifyResult:
    ok: bool
    events: int
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None


def _iter_events(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = (
            session.execute(select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch))
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Walk the whole chain; name the first place it breaks."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    problems: list[str] = []
    first_bad: int | None = None
    for event in _iter_events(session):
        count += 1
        if event.seq != expected_seq:
            problems.append(
                f"event {expected_seq} is missing: the chain jumps from {expected_seq - 1} to {event.seq} (deleted)"
            )
        elif event.prev_hash != prev_hash:
            problems.append(
                f"event {event.seq} ({event.action} at {_iso(event.at)}) does not follow event {event.seq - 1}: "
                f"its link is broken (reordered, inserted or the previous event was edited)"
            )
        else:
            if hash_of(event) != event.hash:
                problems.append(
                    f"event {event.seq} ({event.action} at {_iso(event.at)}) was edited: "
                    f"its content does not match its hash"
                )
        if problems:
            first_bad = event.seq if first_bad is None else first_bad
            break
        prev_hash = event.hash
        expected_seq = event.seq + 1
    if not problems:
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
        if head.seq != expected_seq - 1 or head.hash != prev_hash:
            problems.append(
                f"the chain ends at event {expected_seq - 1} but its head says {head.seq}: "
                f"events at the end were deleted (or the head was edited)"
            )
            first_bad = expected_seq
    return VerifyResult(ok=not problems, events=count, problems=problems, first_bad_seq=first_bad)


def event_document(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "id": event.id,
        "at": _iso(event.at),
        "actor": event.actor,
        "action": event.action,
        "key_id": event.key_id,
        "key_name": event.key_name,
        "reason": event.reason,
        "details": event.details,
        "hash": event.hash,
        "prev_hash": event.prev_hash,
    }
