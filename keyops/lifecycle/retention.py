"""Pruning history past its retention: received alerts, findings, and
delivered outbox rows (``[retention]``).

What is never deleted, whatever the settings say: an outbox delivery that
has not been delivered (pending, or dead and waiting for a person), an event
that still has such a delivery, an alert whose actions are still being
applied (``acting``/``resuming``: the resume job needs it), and a finding of
a key that is suspended right now (the evidence behind an open decision).
Findings have no resolved state of their own, so age and the key's state are
the whole rule. The audit log is never pruned: it is the permanent record,
and each prune that deleted something appends a ``retention.pruned`` event
with the counts.

Rows go in batches of ``batch_size``, one short transaction each, so a
large table is never locked for long and the API keeps writing meanwhile.
On PostgreSQL a session advisory lock makes one replica prune while the
others skip their run (their next run finds little to do); a SQLite
inventory has one host, and its write lock serialises the batches anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, exists, func, not_, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from keyops import audit
from keyops.config import RetentionSettings
from keyops.domain.retention import parse_retention
from keyops.domain.states import KeyState
from keyops.inventory import models
from keyops.inventory.types import utcnow

log = logging.getLogger("keyops.retention")

#: pg_advisory_lock key of the prune run (any constant unique to keyops).
_LOCK_KEY = 0x6B6F7073_7072756E & 0x7FFFFFFFFFFFFFFF
#: Alert verdicts whose actions are not applied yet.
_UNFINISHED_ALERTS = ("acting", "resuming")


@dataclass
class PruneReport:
    """Rows deleted (or, in a dry run, that would be) per table, with the
    time before which rows were old enough; ``forever`` names the settings
    that keep everything."""

    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    before: dict[str, str] = field(default_factory=dict)
    forever: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class _Target:
    table: str
    model: Any
    pk: InstrumentedAttribute[Any]
    condition: ColumnElement[bool]


def _targets(settings: RetentionSettings, now: datetime, report: PruneReport) -> list[_Target]:
    """What to delete, in order (deliveries before the events they belong to)."""
    targets: list[_Target] = []

    def cutoff(name: str) -> datetime | None:
        seconds = parse_retention(getattr(settings, name))
        if seconds is None:
            report.forever.append(name)
            return None
        return now - timedelta(seconds=seconds)

    def add(table: str, model: Any, pk: InstrumentedAttribute[Any], before: datetime, cond: Any) -> None:
        targets.append(_Target(table, model, pk, cond))
        report.before[table] = before.isoformat(timespec="seconds")

    alerts_before = cutoff("inbound_alerts")
    if alerts_before is not None:
        a = models.InboundAlert
        add("inbound_alerts", a, a.id, alerts_before,
            and_(a.received_at < alerts_before, a.verdict.not_in(_UNFINISHED_ALERTS)))  # fmt: skip
    findings_before = cutoff("findings")
    if findings_before is not None:
        f, k = models.Finding, models.Key
        suspended = exists(select(k.id).where(k.id == f.key_id, k.state == KeyState.SUSPENDED.value))
        add("findings", f, f.id, findings_before, and_(f.created_at < findings_before, not_(suspended)))
    outbox_before = cutoff("outbox_delivered")
    if outbox_before is not None:
        d, e = models.OutboxDelivery, models.OutboxEvent
        delivered = and_(d.status == "delivered", d.delivered_at.is_not(None), d.delivered_at < outbox_before)
        add("outbox_deliveries", d, d.id, outbox_before, delivered)
        orphaned = and_(e.created_at < outbox_before, not_(exists(select(d.id).where(d.event_seq == e.seq))))
        add("outbox_events", e, e.seq, outbox_before, orphaned)
    return targets


@contextmanager
def _single_pruner(engine: Engine) -> Iterator[bool]:
    """True when this process may prune now (PostgreSQL: it holds the
    advisory lock; other databases: always)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()


def _delete_batches(engine: Engine, target: _Target, batch_size: int) -> int:
    deleted = 0
    while True:
        # Not correlated with the DELETE's own table: the batch is its own query.
        batch = select(target.pk).where(target.condition).limit(batch_size).correlate(None).scalar_subquery()
        conn: Connection
        with engine.begin() as conn:
            removed = int(conn.execute(delete(target.model).where(target.pk.in_(batch))).rowcount or 0)
        deleted += removed
        if removed < batch_size:
            return deleted


def _count(engine: Engine, target: _Target) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(target.model).where(target.condition)).scalar() or 0)


def prune_history(
    engine: Engine,
    sessions: sessionmaker[Session],
    settings: RetentionSettings,
    *,
    actor: str,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneReport | None:
    """Delete (or count, with ``dry_run``) the rows past their retention.
    None when another replica is pruning right now."""
    now = now or utcnow()
    report = PruneReport(dry_run=dry_run)
    targets = _targets(settings, now, report)
    if dry_run:
        # A dry run counts what is there now; with outbox events, those whose
        # deliveries would go first are not counted (they go on the next run).
        report.counts = {t.table: _count(engine, t) for t in targets}
        return report
    with _single_pruner(engine) as mine:
        if not mine:
            log.info("another replica is pruning; skipping this run")
            return None
        for target in targets:
            report.counts[target.table] = _delete_batches(engine, target, settings.batch_size)
    if report.total:
        with sessions.begin() as session:
            audit.append(
                session,
                actor=actor,
                action="retention.pruned",
                reason="history past its retention",
                details={"deleted": report.counts, "before": report.before, "kept_forever": report.forever},
            )
        log.info("pruned history past its retention", extra={"deleted": report.counts})
    return report
