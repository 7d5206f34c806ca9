"""The outbox: events written in the same transaction as the change they announce.

``emit(session, type, key_id, payload)`` adds one ``OutboxEvent`` and one
``OutboxDelivery`` per sink subscribed to that type, inside the caller's
transaction: if the change rolls back, so does its announcement, and if it
commits, the announcement cannot be lost. The dispatcher delivers later.

Which sinks exist is decided once, at the composition root, by
:func:`install_routes`, which stores the routing table in the session
factory's ``info``; every session then carries it, so callers deep in the
lifecycle need no extra collaborator and there is no global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from keyops.domain.redact import redact_value
from keyops.inventory.models import OutboxDelivery, OutboxEvent
from keyops.inventory.types import utcnow

ROUTES_INFO_KEY = "keyops.notify.routes"

#: Event types keyops emits (sinks may subscribe to any subset).
EVENT_TYPES = (
    "key.rotated",
    "key.revoked",
    "key.suspended",
    "key.resumed",
    "key.expired",
    "rotation.failed",
    "case.opened",
    "case.escalated",
    "finding.created",
)

#: Types a sink gets only when it lists them: one ``finding.created`` per
#: detector judgement is an evidence feed for machines (a SIEM), far too many
#: for people, who hear about detection through ``case.*`` events.
OPT_IN_TYPES = frozenset({"finding.created"})


@dataclass(frozen=True)
class Route:
    """A sink and the event types it wants (empty = every type but the opt-in ones)."""

    sink: str
    events: frozenset[str] = frozenset()

    def wants(self, event_type: str) -> bool:
        if not self.events:
            return event_type not in OPT_IN_TYPES
        return event_type in self.events


def anyone_wants(session: Session, event_type: str) -> bool:
    """Whether any configured sink subscribes to ``event_type`` (an event
    nobody receives is not written at all)."""
    return any(route.wants(event_type) for route in routes_of(session))


def install_routes(sessions: sessionmaker[Session], routes: Sequence[Route]) -> None:
    """Make every session from ``sessions`` carry the routing table."""
    info = dict(sessions.kw.get("info") or {})
    info[ROUTES_INFO_KEY] = tuple(routes)
    sessions.configure(info=info)


def routes_of(session: Session) -> tuple[Route, ...]:
    routes = session.info.get(ROUTES_INFO_KEY, ())
    return tuple(routes)


def emit(
    session: Session,
    type: str,
    key_id: str | None,
    payload: Mapping[str, Any],
    *,
    routes: Sequence[Route] | None = None,
) -> OutboxEvent:
    """Record one event and its deliveries in the caller's transaction.

    ``payload`` must be JSON-serialisable and should hold no key material
    (ids, names, hashes and prefixes only); it is redacted recursively before
    it is written all the same, so a reason or summary quoting a secret never
    reaches a Slack channel or a webhook sink.
    """
    event = OutboxEvent(type=type, key_id=key_id, payload=redact_value(dict(payload)), created_at=utcnow())
    session.add(event)
    session.flush()  # assigns seq
    now = utcnow()
    for route in routes if routes is not None else routes_of(session):
        if route.wants(type):
            session.add(OutboxDelivery(event_seq=event.seq, sink=route.sink, status="pending", next_attempt_at=now))
    session.flush()
    return event
