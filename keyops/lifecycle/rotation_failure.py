"""A rotation that ran out of attempts: marked failed, loudly, and given a
time at which the daemon tries it again by itself.

A failed rotation leaves the current key valid, but it also blocks the key's
schedule (a key with an unfinished rotation is never claimed as due), so a
store outage at 3 a.m. must not leave keys unrotated until someone reads the
alert. The daemon's resume job therefore takes a failed rotation over again
once its ``next_attempt_at`` has passed: ``rotation.retry_failed_after`` after
the first failure, doubling (with jitter) after each further one, at most
``rotation.automatic_retries`` times. Then it waits for ``keyops rotations
resume``, and the last finding says so.

A rotation that fails for good before activation also gives up its pending
version: that version was never delivered to a consumer, yet verify would
accept its hash for as long as the rotation waits for a person (weeks,
perhaps), and its plaintext may sit in a store's staging slot. It is revoked
in the same transaction that marks the rotation failed (audited as
``rotation.pending_discarded``), and the rotation goes back to ``planned``,
so a later ``keyops rotations resume`` mints fresh material instead of
activating material that has lingered in the stores.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyops.domain.states import VersionState
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle import backoff
from keyops.lifecycle.rotation_state import LeaseLost, Snapshot, audit_step, owned, read_snapshot, record
from keyops.lifecycle.views import iso
from keyops.notify.outbox import emit

log = logging.getLogger("keyops.rotation")


@dataclass(frozen=True)
class RetryPlan:
    """When the daemon retries a failed rotation without being asked."""

    #: Delay before the first automatic retry; doubles for each later one.
    after_seconds: float = 900.0
    #: Automatic retries before keyops waits for a person (0: never retry).
    automatic_retries: int = 3

    def next_attempt(self, failures: int, now: datetime, rng: random.Random | None = None) -> datetime | None:
        """The time of the next automatic retry after the ``failures``-th
        failure (1 = the first), or None when none is left."""
        if failures > self.automatic_retries or self.after_seconds <= 0:
            return None
        cap = self.after_seconds * 2 ** (self.automatic_retries - 1)
        return now + timedelta(seconds=backoff.delay(failures, initial=self.after_seconds, maximum=cap, rng=rng))


def failures_of(rotation: models.Rotation) -> int:
    """How often this rotation has failed so far (its step log says)."""
    return sum(1 for entry in rotation.steps or () if entry.get("step") == "failed")


#: Steps before activation: the new version is still pending, no consumer
#: has been told about it.
_BEFORE_ACTIVATION = ("planned", "material_created", "pending", "tested")
#: Step-log entries that describe the discarded material; dropped so that a
#: later resume redoes them for the fresh material.
_MATERIAL_STEPS = ("minting", "pending", "pending_everywhere", "tested")


@dataclass(frozen=True)
class Discarded:
    """A pending version given up with its rotation (for store cleanup)."""

    version_id: str
    number: int
    external_id: str | None


def discard_pending(session: Session, rotation: models.Rotation, key: models.Key) -> Discarded | None:
    """Revoke the rotation's pending version (never activated, never
    announced) and send the rotation back to ``planned``; audited. None when
    there is nothing to discard (no new version yet, or already activated)."""
    if rotation.step not in _BEFORE_ACTIVATION or not rotation.new_version_id:
        return None
    version = session.get(models.KeyVersion, rotation.new_version_id)
    if version is None or version.state != VersionState.PENDING.value:
        return None
    now = utcnow()
    version.state = VersionState.REVOKED.value
    version.revoked_at = now
    discarded = Discarded(version.id, version.number, version.external_id)
    rotation.new_version_id = None
    rotation.step = "planned"
    rotation.steps = [e for e in rotation.steps or () if e.get("step") not in _MATERIAL_STEPS]
    record(rotation, "pending_discarded", version=version.number)
    audit_step(
        session,
        rotation,
        key,
        "rotation.pending_discarded",
        {"rotation_id": rotation.id, "version": version.number, "display_prefix": version.display_prefix},
        reason="the rotation failed for good before activation: its pending version is revoked",
    )
    return discarded


def discard_abandoned_pending(sessions: sessionmaker[Session], limit: int = 100) -> list[tuple[Snapshot, Discarded]]:
    """Rotations that failed for good before ``discard_pending`` existed
    (or under a setting that made every failure final) still hold a pending
    version; discard those too. The resume job calls this each run: one
    indexed query that finds nothing once they are gone. Returns what the
    caller should remove from the stores."""
    found: list[tuple[Snapshot, Discarded]] = []
    with sessions.begin() as session:
        rotations = session.execute(
            select(models.Rotation)
            .where(models.Rotation.status == "failed", models.Rotation.next_attempt_at.is_(None))
            .where(models.Rotation.step.in_(_BEFORE_ACTIVATION), models.Rotation.new_version_id.is_not(None))
            .order_by(models.Rotation.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
        for rotation in list(rotations):
            key = session.get(models.Key, rotation.key_id)
            if key is None:
                continue
            snap = read_snapshot(session, rotation.id)
            discarded = discard_pending(session, rotation, key)
            if discarded is not None:
                found.append((snap, discarded))
    return found


def mark_failed(
    sessions: sessionmaker[Session],
    lease: timedelta,
    plan: RetryPlan,
    rotation_id: str,
    worker_id: str,
    message: str,
) -> Discarded | None:
    """Mark the rotation failed: error log, ``rotation.failed`` audit event
    and webhook event, a high-severity finding, and the automatic retry time.
    The current version is untouched (or, after activation, both versions
    stay valid until the rotation is finished). With no automatic retry
    left, a pending version is revoked (``discard_pending``) and returned so
    the caller can remove its copies from the stores."""
    discarded: Discarded | None = None
    try:
        with owned(sessions, rotation_id, worker_id, lease) as (session, rotation):
            now = utcnow()
            failures = failures_of(rotation) + 1
            retry_at = plan.next_attempt(failures, now)
            failed_step = rotation.step
            rotation.status = "failed"
            rotation.last_error = message
            rotation.lease_owner = None
            rotation.lease_expires_at = None
            rotation.next_attempt_at = retry_at
            record(rotation, "failed", error=message, next_attempt_at=iso(retry_at))
            key = session.get(models.Key, rotation.key_id)
            assert key is not None
            then = (
                f"keyops retries it at {iso(retry_at)}"
                if retry_at is not None
                else "no automatic retry is left: run keyops rotations resume once the cause is fixed"
            )
            details = {
                "rotation_id": rotation.id,
                "step": rotation.step,
                "error": message,
                "failures": failures,
                "next_attempt_at": iso(retry_at),
            }
            audit_step(session, rotation, key, "rotation.failed", details)
            if retry_at is None:
                discarded = discard_pending(session, rotation, key)
                if discarded is not None:
                    details["discarded_version"] = discarded.number
                    then += f"; its pending version {discarded.number} is revoked (resume mints a new one)"
            finding = models.Finding(
                key_id=key.id,
                detector="rotation",
                severity="high",
                score=1.0,
                summary=f"rotation of {key.name} failed at step {failed_step}: {message}; {then}",
                evidence=details,
                action="none",
            )
            session.add(finding)
            session.flush()
            emit(
                session,
                "rotation.failed",
                key.id,
                {
                    "key_id": key.id,
                    "key_name": key.name,
                    **details,
                    "finding_id": finding.id,
                    "actor": rotation.actor,
                    "reason": rotation.reason,
                },
            )
    except LeaseLost:
        return None
    log.error(
        "rotation failed; "
        + ("it is retried automatically" if retry_at is not None else "run keyops rotations resume once fixed"),
        extra={"rotation_id": rotation_id, "error": message, "failures": failures, "next_attempt_at": iso(retry_at)},
    )
    return discarded
