"""Ending keys whose end date (``expires_at``) has passed.

Verify already answers EXPIRED from the moment ``expires_at`` passes; this
makes the inventory agree (state ``expired``, audited, no more rotations).
Rows are claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or under
SQLite's write lock, so replicas running the job together expire each key once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.domain.states import KeyState, key_transition
from keyops.inventory import models
from keyops.inventory.types import utcnow


def expire_due(sessions: sessionmaker[Session], *, actor: str, now: datetime | None = None, limit: int = 500) -> int:
    """Expire up to ``limit`` keys past their end date; returns how many."""
    now = now or utcnow()
    with sessions.begin() as session:
        keys = list(
            session.execute(
                select(models.Key)
                .where(models.Key.expires_at.is_not(None), models.Key.expires_at <= now)
                .where(models.Key.state.in_((KeyState.ACTIVE.value, KeyState.SUSPENDED.value)))
                .order_by(models.Key.expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        for key in keys:
            previous = key.state
            key.state = key_transition(key.state, "expire", key.name).value
            key.state_reason = "end date reached"
            key.next_rotation_at = None
            key.updated_at = now
            audit.append(
                session,
                actor=actor,
                action="key.expired",
                key_id=key.id,
                key_name=key.name,
                reason="end date reached",
                details={
                    "from": previous,
                    "to": key.state,
                    "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                },
            )
        return len(keys)
