"""Claiming work so that several replicas on one database each take a
different part of it (invariant 4: each due rotation runs exactly once).

PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` lets replicas pass over rows
another replica is claiming right now. SQLite ignores that clause, but every
transaction there starts with ``BEGIN IMMEDIATE`` (``inventory.db``), so
claims are serialised by the database lock instead. Either way the claim is
made durable by writing the lease (``lease_owner``, ``lease_expires_at``) or
by clearing ``next_rotation_at`` in the same transaction, so a later query by
another replica does not see the row as free.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from keyops.domain.states import KeyState
from keyops.inventory import models

UNFINISHED = ("running", "failed")


def due_keys(session: Session, now: datetime, limit: int) -> list[models.Key]:
    """Active keys whose scheduled rotation is due, locked for this transaction."""
    stmt = (
        select(models.Key)
        .where(models.Key.state == KeyState.ACTIVE.value)
        .where(models.Key.next_rotation_at.is_not(None))
        .where(models.Key.next_rotation_at <= now)
        # Without a destination nobody would receive the new key.
        .where(exists(select(models.Destination.id).where(models.Destination.key_id == models.Key.id)))
        .order_by(models.Key.next_rotation_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=models.Key)
        # The claim looks at every key's destinations: one query for all.
        .options(selectinload(models.Key.destinations))
    )
    return list(session.execute(stmt).scalars())


def with_unfinished_rotation(session: Session, key_ids: Collection[str]) -> set[str]:
    """Which of ``key_ids`` have a running or failed rotation (one query for a batch)."""
    if not key_ids:
        return set()
    stmt = select(models.Rotation.key_id).where(
        models.Rotation.key_id.in_(list(key_ids)), models.Rotation.status.in_(UNFINISHED)
    )
    return set(session.execute(stmt).scalars())


def unfinished_rotation(session: Session, key_id: str) -> models.Rotation | None:
    """The key's running or failed rotation, if any (at most one by construction:
    every rotation is created while holding the key row's lock)."""
    stmt = (
        select(models.Rotation)
        .where(models.Rotation.key_id == key_id)
        .where(models.Rotation.status.in_(UNFINISHED))
        .order_by(models.Rotation.created_at.desc())
        .limit(1)
    )
    return session.execute(stmt).scalars().first()


def resumable(
    session: Session,
    now: datetime,
    *,
    only_expired_leases: bool,
    include_failed: bool,
    limit: int,
    also: Collection[str] = (),
) -> list[models.Rotation]:
    """Unfinished rotations nobody is working on, locked for this
    transaction: running ones whose lease expired (or every running one),
    failed ones whose automatic retry is due (or every failed one). ``also``:
    running rotations taken as free although their lease is live (their
    worker is known to be dead)."""
    free = or_(models.Rotation.lease_expires_at.is_(None), models.Rotation.lease_expires_at <= now)
    if also:
        free = or_(free, models.Rotation.id.in_(list(also)))
    running = models.Rotation.status == "running"
    if only_expired_leases:
        running = running & free
    failed = models.Rotation.status == "failed"
    if not include_failed:
        failed = failed & models.Rotation.next_attempt_at.is_not(None) & (models.Rotation.next_attempt_at <= now)
    condition = or_(running, failed)
    stmt = (
        select(models.Rotation)
        .where(condition)
        .order_by(models.Rotation.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(stmt).scalars())


def previous_versions_due(
    session: Session,
    now: datetime,
    limit: int,
    idle_policies: tuple[str, ...] = (),
    idle_before: datetime | None = None,
) -> list[models.KeyVersion]:
    """Previous versions whose grace is over, plus (for policies with
    usage-aware retirement) previous versions of their keys that may be idle:
    neither used nor activated after ``idle_before`` (now minus the shortest
    idle period of those policies). The caller decides idleness; the filter
    keeps versions in busy use from taking every place under ``limit`` run
    after run while idle ones behind them wait. Locked for this transaction."""
    retirable = models.KeyVersion.grace_ends_at <= now
    if idle_policies:
        maybe_idle: ColumnElement[bool] = models.Key.policy.in_(idle_policies)
        if idle_before is not None:
            maybe_idle = and_(
                maybe_idle,
                or_(models.KeyVersion.last_used_at.is_(None), models.KeyVersion.last_used_at <= idle_before),
                or_(models.KeyVersion.activated_at.is_(None), models.KeyVersion.activated_at <= idle_before),
            )
        retirable = or_(retirable, maybe_idle)
    stmt = (
        select(models.KeyVersion)
        .join(models.Key, models.Key.id == models.KeyVersion.key_id)
        .where(models.KeyVersion.state == "previous")
        .where(retirable)
        .order_by(models.KeyVersion.grace_ends_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=models.KeyVersion)
    )
    return list(session.execute(stmt).scalars())
