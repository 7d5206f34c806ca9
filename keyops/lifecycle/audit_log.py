"""Reading the audit log for people: the newest events and the chain's
verdict, as the documents ``keyops audit list/verify --json`` print and
``/v1/admin/audit`` answers."""

from __future__ import annotations

import difflib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.errors import AuditChainError, AuditHeadMismatchError, InvalidInputError, KeyOpsError
from keyops.inventory.models import AuditEvent
from keyops.lifecycle.keys import find_key

MAX_LIMIT = 100000

#: Actions that are always valid filters, present in this log or not (the
#: others are whatever the log holds: profile.created, key.credential_deleted...).
COMMON_ACTIONS = (
    "key.issued",
    "key.updated",
    "key.suspended",
    "key.resumed",
    "key.revoked",
    "key.destinations_cleared",
    "key.expired",
    "key.adopted",
    "key.version_retired",
    "rotation.started",
    "rotation.resumed",
    "token.created",
    "token.revoked",
)


def check_action(session: Session, action: str) -> None:
    """``--action`` must be an action name, like ``--state`` must be a state:
    ``revoke`` is refused with ``key.revoked`` suggested, not answered with nothing."""
    present = set(session.execute(select(AuditEvent.action).distinct()).scalars())
    known = sorted(present | set(COMMON_ACTIONS))
    if action in known:
        return
    close = [a for a in known if action.lower() in a] or difflib.get_close_matches(action, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close[:3])}? " if close else ""
    raise InvalidInputError(f"unknown audit action {action!r}: {hint}valid actions: {', '.join(known)}")


def list_events(
    sessions: sessionmaker[Session], *, key: str | None = None, action: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest ``limit`` events (of one key, of one action), oldest of them first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    with sessions() as session:
        stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
        if key:
            stmt = stmt.where(AuditEvent.key_id == find_key(session, key).id)
        if action:
            check_action(session, action)
            stmt = stmt.where(AuditEvent.action == action)
        events = list(reversed(session.execute(stmt).scalars().all()))
        return [audit.event_document(e) for e in events]


def parse_expected_head(text: str | None, label: str = "--expect-head") -> tuple[int, str] | None:
    if text is None:
        return None
    try:
        return audit.parse_head(text)
    except ValueError as exc:
        raise InvalidInputError(f"{label}: {exc}") from None


def verify_report(
    sessions: sessionmaker[Session], expected: tuple[int, str] | None = None
) -> tuple[dict[str, Any], KeyOpsError | None]:
    """The chain's verdict document and, when it is not ok, the error the
    CLI exits with (9: broken or unsealed; 10: the expected head is gone)."""
    with sessions() as session:
        result = audit.verify(session, expect_head=expected)
    failure: KeyOpsError | None = None
    if not result.intact:
        failure = AuditChainError(f"audit chain is broken: {result.problems[0]}")
    elif result.anchor_problem:
        failure = AuditHeadMismatchError(f"audit chain does not hold the expected head: {result.anchor_problem}")
    elif result.legacy_events:
        failure = AuditChainError(
            f"audit chain is not sealed: {result.legacy_events} of {result.events} events are unkeyed legacy events "
            f"(plain SHA-256, written before the audit key existed) that anyone with write access to the database "
            f"could have rewritten; check them, then run `keyops audit seal`"
        )
    doc = {
        "ok": failure is None,
        "events": result.events,
        "sealed_events": result.sealed_events,
        "legacy_events": result.legacy_events,
        "problems": result.problems,
        "first_bad_seq": result.first_bad_seq,
        "head": {"seq": result.head_seq, "hash": result.head_hash},
        "expected_head": None if expected is None else {"seq": expected[0], "hash": expected[1]},
        "expected_head_problem": result.anchor_problem,
    }
    return doc, failure


def head_document(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """``audit head --json``: the chain's head, to anchor outside the database."""
    with sessions() as session:
        return document_of_head(audit.head(session))


def document_of_head(head: audit.Head) -> dict[str, Any]:
    return {
        "seq": head.seq,
        "hash": head.hash,
        "anchor": f"{head.seq}:{head.hash}",
        "hash_alg": head.hash_alg,
        "seal_key_id": head.seal_key_id,
        "at": head.at.isoformat(timespec="microseconds") if head.at else None,
    }
