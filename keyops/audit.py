"""The hash-chained audit log, sealed with a key kept outside the database.

Every state change of a key appends one event in the same transaction as the
change. Each event stores the hash of the one before it, and its own
HMAC-SHA256 over its content and that link under the audit key
(``keyops/audit_key.py``), so editing, deleting, reordering or inserting an
event breaks the chain at a place ``verify`` can name, even for someone who
can write to the database: without the key they cannot recompute the links.
Deleting events at the end of the chain leaves a shorter chain that is still
valid; exporting the head (``head``) and checking it later
(``verify(expect_head=...)``) catches that.

Events written before the key existed carry a plain SHA-256 (``hash_alg``
"sha256"). They verify as legacy events, never as sealed ones, and ``seal``
re-seals an intact chain under the key. A plain event after a sealed one is a
failure: the chain can never be downgraded.

The single ``audit_head`` row is locked by each appender, so concurrent
writers (several CLI runs, several daemons) extend one chain in turn;
``prev_hash`` is unique, so a fork is impossible even if that lock were
bypassed. The key reaches this module through the session
(``session.info[SESSION_KEY]``), put there by the composition root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from keyops.audit_key import AuditKey, AuditKeySource
from keyops.domain.ids import uuid7
from keyops.domain.redact import redact
from keyops.errors import AuditChainError, ConfigError
from keyops.inventory.models import AuditEvent, AuditHead
from keyops.inventory.types import storable, utcnow

GENESIS_HASH = "0" * 64
#: ``hash_alg`` of events written before the audit key existed.
ALG_SHA256 = "sha256"
#: ``hash_alg`` of events sealed under the audit key.
ALG_HMAC = "hmac-sha256"
#: Where the composition root puts the AuditKeySource in ``session.info``.
SESSION_KEY = "keyops.audit_key"
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


def key_of(session: Session) -> AuditKey:
    """The audit key the composition root attached to this session."""
    source = session.info.get(SESSION_KEY)
    if not isinstance(source, AuditKeySource):
        raise RuntimeError("this session has no audit key: build sessions with keyops.bootstrap.build()")
    return source.get()


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
    key: AuditKey | None = None,
) -> str:
    """The link an event must carry: HMAC-SHA256 under ``key``, or, without a
    key, the plain SHA-256 of legacy events. A sealed event's content also
    names its algorithm and key fingerprint, so neither can be swapped."""
    document: dict[str, Any] = {
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
    }
    if key is None:
        content = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + content).hexdigest()
    document["hash_alg"] = ALG_HMAC
    document["seal_key_id"] = key.key_id
    content = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return key.mac(prev_hash.encode("ascii") + b"\n" + content)


def hash_of(event: AuditEvent, key: AuditKey | None = None, *, prev_hash: str | None = None) -> str:
    """The hash an event must carry, recomputed from its stored content
    (with ``prev_hash``, as if it were linked there instead)."""
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
        prev_hash=event.prev_hash if prev_hash is None else prev_hash,
        key=key,
    )


def _check_same_key(session: Session, head: AuditHead, key: AuditKey) -> None:
    """Refuse to extend a chain sealed under another key: a replica with the
    wrong key would otherwise leave events no verifier can check."""
    if head.seq == 0:
        return
    last = session.execute(
        select(AuditEvent.hash_alg, AuditEvent.seal_key_id).where(AuditEvent.seq == head.seq)
    ).one_or_none()
    if last is not None and last.hash_alg == ALG_HMAC and last.seal_key_id != key.key_id:
        raise ConfigError(
            f"setting audit.key_file: the audit chain in the database is sealed with audit key {last.seal_key_id}, "
            f"but this process has key {key.key_id} (from {key.source}); give every keyops process that shares "
            f"this database the same audit key"
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
    key = key_of(session)
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    _check_same_key(session, head, key)
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
        hash_alg=ALG_HMAC,
        seal_key_id=key.key_id,
    )
    event.hash = hash_of(event, key)
    session.add(event)
    head.seq = event.seq
    head.hash = event.hash
    session.flush()
    return event


@dataclass
class VerifyResult:
    #: Intact, every event sealed under the key, and the expected head held.
    ok: bool
    events: int
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    #: Events sealed under the audit key / plain SHA-256 legacy events.
    sealed_events: int = 0
    legacy_events: int = 0
    #: The last event checked (sequence number and hash).
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    #: Why the chain does not hold the expected head (when one was given).
    anchor_problem: str | None = None

    @property
    def intact(self) -> bool:
        """Nothing was found broken (legacy events may remain)."""
        return not self.problems


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


def _where(event: AuditEvent) -> str:
    return f"event {event.seq} ({event.action} at {_iso(event.at)})"


def _content_problem(event: AuditEvent, key: AuditKey, seen_sealed: bool) -> str | None:
    """Why this event's own hash is not the one it must carry, if it is not."""
    if event.hash_alg == ALG_SHA256:
        if seen_sealed:
            return (
                f"{_where(event)} carries a plain SHA-256 hash after sealed events: "
                f"the chain was rewritten without the audit key (downgraded)"
            )
        if hash_of(event) != event.hash:
            return f"{_where(event)} was edited: its content does not match its hash"
        return None
    if event.hash_alg != ALG_HMAC:
        return f"{_where(event)} names an unknown hash algorithm {event.hash_alg!r}"
    if event.seal_key_id != key.key_id:
        return (
            f"{_where(event)} is sealed with audit key {event.seal_key_id}, but the configured key is "
            f"{key.key_id} (from {key.source}): configure the key this chain was sealed with "
            f"(audit.key_file or KEYOPS_AUDIT_KEY), or the event was edited"
        )
    if hash_of(event, key) != event.hash:
        return f"{_where(event)} was edited: its content does not match its HMAC under the audit key"
    return None


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as printed by ``keyops audit head``."""
    seq_text, sep, digest = text.strip().partition(":")
    digest = digest.lower()
    if not sep or not seq_text.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"expected SEQ:HASH as printed by `keyops audit head`, got {text!r}")
    return int(seq_text), digest


def verify(session: Session, *, expect_head: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the whole chain; name the first place it breaks. With
    ``expect_head`` (a head exported earlier), also check that the chain still
    holds that exact event, so deleting events at the end is caught too."""
    key = key_of(session)
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = sealed = legacy = 0
    seen_sealed = False
    anchored_hash: str | None = None
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
                f"{_where(event)} does not follow event {event.seq - 1}: "
                f"its link is broken (reordered, inserted or the previous event was edited)"
            )
        else:
            problem = _content_problem(event, key, seen_sealed)
            if problem:
                problems.append(problem)
        if problems:
            first_bad = event.seq if first_bad is None else first_bad
            break
        if event.hash_alg == ALG_HMAC:
            seen_sealed = True
            sealed += 1
        else:
            legacy += 1
        if expect_head is not None and event.seq == expect_head[0]:
            anchored_hash = event.hash
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
    result = VerifyResult(
        ok=not problems and legacy == 0,
        events=count,
        problems=problems,
        first_bad_seq=first_bad,
        sealed_events=sealed,
        legacy_events=legacy,
        head_seq=expected_seq - 1,
        head_hash=prev_hash,
    )
    if expect_head is not None and not problems:
        result.anchor_problem = _anchor_problem(expect_head, anchored_hash, result)
        result.ok = result.ok and result.anchor_problem is None
    return result


def _anchor_problem(expect: tuple[int, str], found: str | None, result: VerifyResult) -> str | None:
    seq, digest = expect
    if seq == 0:
        return None if digest == GENESIS_HASH else "the expected head 0 must carry the genesis hash (64 zeros)"
    if found is None:
        return (
            f"the chain ends at event {result.head_seq} but the expected head is event {seq}: "
            f"events after {result.head_seq} were deleted (truncated)"
        )
    if found != digest:
        return (
            f"event {seq} carries hash {found}, not the expected {digest}: "
            f"the chain was rewritten since that head was exported (or it was exported before `keyops audit seal`)"
        )
    return None


@dataclass
class Head:
    seq: int
    hash: str
    hash_alg: str | None
    seal_key_id: str | None
    at: datetime | None


def head(session: Session) -> Head:
    """The newest event: what to anchor elsewhere (``SEQ:HASH``)."""
    event = session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one_or_none()
    if event is None:
        return Head(seq=0, hash=GENESIS_HASH, hash_alg=None, seal_key_id=None, at=None)
    return Head(seq=event.seq, hash=event.hash, hash_alg=event.hash_alg, seal_key_id=event.seal_key_id, at=event.at)


@dataclass
class SealResult:
    #: Events that were plain SHA-256 before (0: nothing needed sealing).
    legacy_events: int
    #: Events rewritten (every event after the first legacy one is relinked).
    resealed_events: int
    head: Head


def seal(session: Session, *, actor: str, batch: int = 1000) -> SealResult:
    """Re-seal an intact chain that still holds legacy events under the audit
    key, inside the caller's transaction. The chain is verified first, under
    the head lock (no appender can interleave); a broken chain is refused and
    nothing is changed. Every event is relinked from the genesis, so hashes
    exported before this call no longer match: export the head again."""
    key = key_of(session)
    session.execute(select(AuditHead.seq).where(AuditHead.id == 1).with_for_update()).one()
    checked = verify(session)
    if not checked.intact:
        raise AuditChainError(f"cannot seal: the audit chain is broken: {checked.problems[0]}; nothing was changed")
    if checked.legacy_events == 0:
        session.expunge_all()
        return SealResult(legacy_events=0, resealed_events=0, head=head(session))
    table = AuditEvent.__table__
    assert isinstance(table, Table)
    statement = (
        update(table)
        .where(table.c.seq == bindparam("b_seq"))
        .values(
            prev_hash=bindparam("b_prev"),
            hash=bindparam("b_hash"),
            hash_alg=ALG_HMAC,
            seal_key_id=key.key_id,
        )
    )
    prev_hash = GENESIS_HASH
    rewritten = 0
    last = 0
    while True:
        rows = (
            session.execute(select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch))
            .scalars()
            .all()
        )
        if not rows:
            break
        params = []
        for event in rows:
            new_hash = hash_of(event, key, prev_hash=prev_hash)
            params.append({"b_seq": event.seq, "b_prev": prev_hash, "b_hash": new_hash})
            prev_hash = new_hash
        last = rows[-1].seq
        session.expunge_all()
        session.connection().execute(statement, params)
        rewritten += len(params)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=last, hash=prev_hash))
    session.expunge_all()
    append(
        session,
        actor=actor,
        action="audit.sealed",
        reason="legacy events re-sealed under the audit key",
        details={"legacy_events": checked.legacy_events, "resealed_events": rewritten, "seal_key_id": key.key_id},
    )
    return SealResult(legacy_events=checked.legacy_events, resealed_events=rewritten, head=head(session))


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
        "hash_alg": event.hash_alg,
        "seal_key_id": event.seal_key_id,
    }
