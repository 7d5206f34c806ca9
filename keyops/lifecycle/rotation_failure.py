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
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle import backoff
from keyops.lifecycle.rotation_state import LeaseLost, audit_step, owned, record
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


def mark_failed(
    sessions: sessionmaker[Session],
    lease: timedelta,
    plan: RetryPlan,
    rotation_id: str,
    worker_id: str,
    message: str,
) -> None:
    """Mark the rotation failed: error log, ``rotation.failed`` audit event
    and webhook event, a high-severity finding, and the automatic retry time.
    The current version is untouched (or, after activation, both versions
    stay valid until the rotation is finished)."""
    try:
        with owned(sessions, rotation_id, worker_id, lease) as (session, rotation):
            now = utcnow()
            failures = failures_of(rotation) + 1
            retry_at = plan.next_attempt(failures, now)
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
            finding = models.Finding(
                key_id=key.id,
                detector="rotation",
                severity="high",
                score=1.0,
                summary=f"rotation of {key.name} failed at step {rotation.step}: {message}; {then}",
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
        return
    log.error(
        "rotation failed; "
        + ("it is retried automatically" if retry_at is not None else "run keyops rotations resume once fixed"),
        extra={"rotation_id": rotation_id, "error": message, "failures": failures, "next_attempt_at": iso(retry_at)},
    )
