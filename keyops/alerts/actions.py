"""Applying the actions alerts lead to, through the lifecycle services.

Kept apart from the receiver so the part that changes keys is small and
reviewable: suspend/revoke go through ``KeyService``, rotations through the
rotation engine (``app.rotations``), and each delivery's outcome is written
back to its ``inbound_alerts`` row. ``resume_unfinished`` finishes the work a
crashed process recorded but never applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.alerts.base import AlertSignal, Delivery, KeyRef
from keyops.domain.redact import bounded
from keyops.errors import KeyOpsError, NotFoundError
from keyops.inventory.models import InboundAlert, Rotation
from keyops.inventory.types import utcnow
from keyops.lifecycle.keys import KeyService

log = logging.getLogger("keyops.alerts")


class Rotator(Protocol):
    """What the receiver needs of ``app.rotations`` (issue 3's engine)."""

    def rotate(self, name_or_id: str, *, grace_seconds: int | None, actor: str, reason: str, trigger: str) -> Any: ...


@dataclass
class Planned:
    """One action on one key, decided by a rule; ``result`` says what happened."""

    key_id: str
    key_name: str
    action: str
    rule: str
    signal: AlertSignal
    result: str = ""


@dataclass
class Plan:
    """Everything one delivery leads to, and the keys it named that do not exist."""

    delivery: Delivery
    planned: list[Planned] = field(default_factory=list)
    unknown: list[KeyRef] = field(default_factory=list)
    keyless: int = 0


ROTATION_STARTED = "rotation started"


def action_doc(item: Planned) -> dict[str, Any]:
    return {
        "key_id": item.key_id,
        "key_name": item.key_name,
        "action": item.action,
        "rule": item.rule,
        "reason": reason_of(item.signal),
        "result": item.result,
    }


def reason_of(signal: AlertSignal) -> str:
    return bounded(signal.reason or signal.type or "alert", 900)


class ActionRunner:
    """Applies planned actions and records their results."""

    def __init__(
        self, sessions: sessionmaker[Session], keys: KeyService, rotator: Callable[[], Rotator | None]
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._rotator = rotator
        self.lock = threading.Lock()

    def has_rotator(self) -> bool:
        return self._rotator() is not None

    def transition(self, item: Planned, actor: str, reason: str) -> str:
        try:
            if item.action == "suspend":
                self._keys.suspend(item.key_id, actor=actor, reason=reason)
                return "suspended"
            self._keys.revoke(item.key_id, actor=actor, reason=reason)
            return "revoked"
        except KeyOpsError as exc:  # already suspended/revoked, or gone meanwhile
            return f"not {item.action}ed: {exc.message}"[:300]

    def rotate(self, item: Planned, actor: str, reason: str) -> str:
        grace = 0 if item.action == "rotate_now" else None
        rotator = self._rotator()
        if rotator is None:
            # The rotation engine is not wired in this build: leave a loud,
            # audited request so an operator (or the engine, once present) acts.
            with self._sessions.begin() as session:
                audit.append(
                    session,
                    actor=actor,
                    action="key.rotation_requested",
                    key_id=item.key_id,
                    key_name=item.key_name,
                    reason=reason,
                    details={"grace_seconds": grace, "trigger": "alert"},
                )
            log.error(
                "rotation requested by an alert, but no rotation engine is configured", extra={"key": item.key_name}
            )
            return "rotation requested (no rotation engine)"
        try:
            result = rotator.rotate(item.key_id, grace_seconds=grace, actor=actor, reason=reason, trigger="alert")
        except NotFoundError as exc:
            return f"not rotated: {exc.message}"[:300]
        except KeyOpsError as exc:
            log.error("rotation requested by an alert failed", extra={"key": item.key_name, "error": exc.message})
            return f"rotation failed: {exc.message}"[:300]
        status = getattr(result, "status", "finished")
        if status != "finished":
            return f"rotation {status}: {getattr(result, 'last_error', '')}"[:300]
        return "rotated with zero grace" if grace == 0 else "rotated"

    def finish(self, alert_id: str, plan: Plan) -> None:
        acted = [p for p in plan.planned if p.action != "none"]
        with self.lock, self._sessions.begin() as session:
            row = session.get(InboundAlert, alert_id)
            if row is None:
                return
            detail = dict(row.detail or {})
            detail["actions"] = [action_doc(p) for p in plan.planned]
            row.detail = detail
            if acted and not any(p.result == ROTATION_STARTED for p in plan.planned):
                row.verdict = "acted"

    def resume_unfinished(self, now: datetime | None = None, *, older_than: float = 120.0) -> int:
        """Finish alerts whose actions a dead process never applied.

        Recording and acting are separate transactions (the lifecycle
        services own theirs), so a crash in between leaves a delivery with
        verdict ``acting``; a sender's retry is then refused as a duplicate.
        The scheduler calls this periodically: each such alert is claimed
        (``acting`` -> ``resuming``, one replica wins) and its missing actions
        are applied; a rotation already started for the key since the alert
        arrived is not started again. Returns how many alerts were resumed.
        """
        now = now or utcnow()
        cutoff = now - timedelta(seconds=older_than)
        with self._sessions() as session:
            stmt = select(InboundAlert.id).where(InboundAlert.verdict == "acting", InboundAlert.received_at < cutoff)
            candidates = list(session.execute(stmt.limit(100)).scalars())
        resumed = 0
        for alert_id in candidates:
            with self._sessions.begin() as session:
                result = session.execute(
                    update(InboundAlert)
                    .where(InboundAlert.id == alert_id, InboundAlert.verdict == "acting")
                    .values(verdict="resuming")
                )
                claimed = cast(CursorResult[Any], result).rowcount
                row = session.get(InboundAlert, alert_id) if claimed else None
                if row is None:
                    continue
                source, received_at, docs = row.source, row.received_at, list((row.detail or {}).get("actions", []))
            plan = Plan(delivery=Delivery(source=source, delivery_id=""))
            for doc in docs:
                signal = AlertSignal(source=source, kind="alert", reason=str(doc.get("reason", "")))
                item = Planned(
                    str(doc.get("key_id")),
                    str(doc.get("key_name")),
                    str(doc.get("action")),
                    str(doc.get("rule")),
                    signal,
                    str(doc.get("result") or ""),
                )
                plan.planned.append(item)
                if item.result and item.result != ROTATION_STARTED:
                    continue
                actor = f"alert:{source}"
                if item.action in ("suspend", "revoke"):
                    item.result = self.transition(item, actor, reason_of(signal))
                elif item.action in ("rotate", "rotate_now"):
                    if self._rotation_since(item.key_id, received_at):
                        item.result = "rotation already started"
                    else:
                        item.result = self.rotate(item, actor, reason_of(signal))
                else:
                    item.result = "recorded"
            self._finish_resumed(alert_id, plan)
            resumed += 1
        return resumed

    def _rotation_since(self, key_id: str, since: datetime) -> bool:
        with self._sessions() as session:
            stmt = select(Rotation.id).where(
                Rotation.key_id == key_id, Rotation.trigger == "alert", Rotation.created_at >= since
            )
            return session.execute(stmt.limit(1)).first() is not None

    def _finish_resumed(self, alert_id: str, plan: Plan) -> None:
        with self.lock, self._sessions.begin() as session:
            row = session.get(InboundAlert, alert_id)
            if row is not None:
                row.detail = {**(row.detail or {}), "actions": [action_doc(p) for p in plan.planned], "resumed": True}
                row.verdict = "acted"
