"""The rotation engine: ``app.rotations``.

Public API (the CLI, the scheduler, detectors and the alert receiver call it):

* ``rotate(name_or_id, *, grace_seconds=None, actor, reason="", trigger="manual")``
  rotates one key now and returns a ``RotationResult``. ``grace_seconds=0``
  ends the old version at once (a leaked key). If the key has a failed or
  abandoned rotation, that one is taken over and finished instead of starting
  a second; if another worker is rotating it right now, ``ConflictError``.
* ``rotate_due(now=None, *, worker_id=None, limit=100, progress=None)``:
  claims keys whose schedule says they are due and rotates them,
  ``rotation.concurrency`` at a time. Safe to call from many replicas at once.
* ``resume(worker_id=None, only_expired_leases=True, include_failed=False)``:
  takes over unfinished rotations (a crashed worker's, failed ones whose
  automatic retry is due, or with ``include_failed`` every failed one) and
  finishes them.
* ``retire_ended_grace(now=None, worker_id=None)``: retires previous
  versions whose grace ended (or that have been idle long enough).
* ``reconcile(repair=False, actor=...)``: inventory vs stores.
* ``list(...)``, ``show(id)``.

Exactly-once: a rotation is only ever created while the key's row is locked
and after checking the key has no unfinished rotation; it is then driven only
by the worker holding its lease (``lease_owner``/``lease_expires_at``), which
every step re-checks and extends. See ``claims`` and ``rotation_steps``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.config import RotationSettings
from keyops.domain.durations import parse_duration
from keyops.domain.ids import uuid7
from keyops.domain.states import KeyState, can_rotate
from keyops.errors import ConflictError, InvalidInputError, InvalidStateError, NotFoundError
from keyops.inventory import models
from keyops.inventory.idprefix import resolve_id
from keyops.inventory.types import utcnow
from keyops.issuers import IssuerRegistry, context_of
from keyops.issuers.janitor import IssuerJanitor
from keyops.lifecycle import claims, delivery
from keyops.lifecycle.keys import find_key
from keyops.lifecycle.lease_holder import Holder, dead_local_process, process_worker_id
from keyops.lifecycle.reconcile import Reconciler, ReconcileReport
from keyops.lifecycle.retire import Retired, Retirer
from keyops.lifecycle.rotation_failure import RetryPlan
from keyops.lifecycle.rotation_result import RotationResult, result_of
from keyops.lifecycle.rotation_steps import Checkpoint, RotationRunner
from keyops.lifecycle.specs import get_policy
from keyops.stores.registry import StoreRegistry

log = logging.getLogger("keyops.rotation")
MAX_GRACE_SECONDS = 365 * 86400
TRIGGERS = ("manual", "schedule", "detector", "alert", "api")


def default_worker_id() -> str:
    return process_worker_id(uuid7()[-6:])


class RotationEngine:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        stores: StoreRegistry,
        settings: RotationSettings,
        *,
        key_prefix: str,
        worker_id: str | None = None,
        issuers: IssuerRegistry | None = None,
    ) -> None:
        self._sessions = sessions
        self._stores = stores
        self.concurrency = settings.concurrency
        self.worker_id = worker_id or default_worker_id()
        self._lease = timedelta(seconds=parse_duration(settings.lease))
        self._default_grace = parse_duration(settings.default_grace)
        self.runner = RotationRunner(
            sessions,
            stores,
            key_prefix=key_prefix,
            max_attempts=settings.max_attempts,
            backoff_initial=parse_duration(settings.backoff_initial),
            backoff_max=parse_duration(settings.backoff_max),
            lease_seconds=int(self._lease.total_seconds()),
            issuers=issuers,
            retry_plan=RetryPlan(parse_duration(settings.retry_failed_after), settings.automatic_retries),
        )
        self.retirer = Retirer(sessions, stores, issuers=self.runner.issuers)
        #: Deletes deactivated cloud credentials after their hold (issue 6).
        self.janitor = IssuerJanitor(sessions, issuers) if issuers is not None else None
        self.reconciler = Reconciler(sessions, stores)

    @property
    def checkpoint(self) -> Checkpoint | None:
        """Called as ``checkpoint(rotation_id, label)`` after each persisted
        step (labels: material_created, pending:<uri>, pending, tested,
        activated, promoted:<uri>, promoted, finished). For tests and metrics."""
        return self.runner.checkpoint

    @checkpoint.setter
    def checkpoint(self, value: Checkpoint | None) -> None:
        self.runner.checkpoint = value

    # -- starting ------------------------------------------------------------

    def rotate(
        self,
        name_or_id: str,
        *,
        grace_seconds: int | None = None,
        actor: str,
        reason: str = "",
        trigger: str = "manual",
        worker_id: str | None = None,
        evict_oldest_inactive: bool = False,
        force: bool = False,
    ) -> RotationResult:
        """Rotate one key now; returns when it finished, failed or was rolled back.
        ``evict_oldest_inactive``: a cloud issuer may delete the oldest inactive
        credential to make room (an IAM user already holding two keys).
        ``force``: take over the key's running rotation even though its
        worker's lease is live (that worker is known to be dead). A worker
        that was a process on this host and no longer exists is taken over
        without ``force``."""
        if grace_seconds is not None and not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidInputError(f"grace must be between 0 and {MAX_GRACE_SECONDS} seconds, got {grace_seconds}")
        if trigger not in TRIGGERS:
            raise InvalidInputError(f"unknown rotation trigger {trigger!r}: use one of {', '.join(TRIGGERS)}")
        if len(reason) > 1000:
            raise InvalidInputError("reason is too long (at most 1000 characters)")
        worker = worker_id or self.worker_id
        if grace_seconds == 0 and self._end_previous(name_or_id, actor):
            evict_oldest_inactive = True  # a compromised cloud key: room for its successor is made, not asked for
        self._preflight(name_or_id, evict_oldest_inactive)
        with self._sessions.begin() as session:
            key = find_key(session, name_or_id, for_update=True)
            if not can_rotate(key.state):
                raise InvalidStateError(f"cannot rotate {key.name}: it is {key.state}")
            grace = grace_seconds if grace_seconds is not None else self._policy_grace(session, key.policy)
            existing = claims.unfinished_rotation(session, key.id)
            now = utcnow()
            if existing is not None:
                live = existing.status == "running" and existing.lease_expires_at and existing.lease_expires_at > now
                dead = bool(live) and dead_local_process(existing.lease_owner)
                if live and not dead and not force:
                    assert existing.lease_expires_at is not None
                    holder = Holder(existing.id, key.name, existing.lease_owner or "?", existing.lease_expires_at)
                    raise ConflictError(
                        f"{key.name} is already being rotated: {holder.describe()}; wait for it "
                        f"(keyops rotations show {existing.id}), or if that worker is dead take over "
                        f"with keyops keys rotate {key.name} --force"
                    )
                rotation = existing
                if grace_seconds is not None and existing.step not in ("activated", "promoted"):
                    rotation.grace_seconds = min(rotation.grace_seconds, grace)
                why = reason or (
                    f"taken over from {existing.lease_owner} ({'its process is gone' if dead else '--force'})"
                    if live
                    else "taken over by a new rotate"
                )
                self._take(session, rotation, worker, now, actor=actor, reason=why)
                if evict_oldest_inactive:
                    rotation.steps = [*(rotation.steps or []), {"step": "evict_allowed", "evict": True}]
            else:
                rotation = self._start(
                    session, key, worker, now, grace=grace, actor=actor, reason=reason, trigger=trigger
                )
                if evict_oldest_inactive:
                    rotation.steps = [*(rotation.steps or []), {"step": "evict_allowed", "evict": True}]
            rotation_id = rotation.id
        return self._drive(rotation_id, worker)

    def _end_previous(self, name_or_id: str, actor: str) -> bool:
        """Grace 0 for a cloud-issued key: its versions still in grace end
        *before* the new one is minted (they would end right after anyway),
        so an IAM user's two-key limit cannot keep a leaked key alive. The
        current key keeps working until the new one is active."""
        with self._sessions() as session:
            key = find_key(session, name_or_id)
            if key.issuer == "native" or not can_rotate(key.state):
                return False
            previous = [v.id for v in key.versions if v.state == "previous"]
        for version_id in previous:
            self.retirer.retire_version(version_id, actor=actor, why="grace 0")
        return True

    def _preflight(self, name_or_id: str, evict: bool) -> None:
        """Ask a cloud issuer whether it can mint now (before anything is
        written, and outside any transaction: it calls the vendor)."""
        with self._sessions() as session:
            key = find_key(session, name_or_id)
            if key.issuer == "native" or not can_rotate(key.state):
                return
            if claims.unfinished_rotation(session, key.id) is not None:
                return  # that rotation may already hold the new credential
            ctx = context_of(key, evict=evict)
        self.runner.issuers.get(key.issuer).preflight(ctx)

    def _policy_grace(self, session: Session, policy_name: str) -> int:
        try:
            return get_policy(session, policy_name).grace
        except NotFoundError:
            return self._default_grace

    def _start(
        self,
        session: Session,
        key: models.Key,
        worker: str,
        now: datetime,
        *,
        grace: int,
        actor: str,
        reason: str,
        trigger: str,
    ) -> models.Rotation:
        rotation = models.Rotation(
            key_id=key.id,
            step="planned",
            status="running",
            trigger=trigger,
            reason=reason,
            actor=actor,
            grace_seconds=grace,
            lease_owner=worker,
            lease_expires_at=now + self._lease,
            steps=[{"step": "planned", "at": now.isoformat(timespec="milliseconds"), "worker": worker}],
        )
        session.add(rotation)
        session.flush()
        audit.append(
            session,
            actor=actor,
            action="rotation.started",
            key_id=key.id,
            key_name=key.name,
            reason=reason,
            details={"rotation_id": rotation.id, "trigger": trigger, "grace_seconds": grace},
        )
        return rotation

    def _take(
        self, session: Session, rotation: models.Rotation, worker: str, now: datetime, *, actor: str, reason: str
    ) -> None:
        was = rotation.status
        rotation.status = "running"
        rotation.lease_owner = worker
        rotation.lease_expires_at = now + self._lease
        rotation.next_attempt_at = None
        rotation.attempts = 0
        rotation.steps = [
            *(rotation.steps or []),
            {"step": "resumed", "at": now.isoformat(timespec="milliseconds"), "worker": worker, "was": was},
        ]
        key = session.get(models.Key, rotation.key_id)
        audit.append(
            session,
            actor=actor,
            action="rotation.resumed",
            key_id=rotation.key_id,
            key_name=key.name if key else None,
            reason=reason,
            details={"rotation_id": rotation.id, "step": rotation.step, "was": was},
        )

    def _drive(self, rotation_id: str, worker: str) -> RotationResult:
        result = self.runner.drive(rotation_id, worker)
        if result.ok and result.grace_seconds == 0:
            # Grace 0 means "the old material is compromised": every version
            # still in grace goes, not only the one this rotation replaced.
            with self._sessions() as session:
                old_ids = list(
                    session.execute(
                        select(models.KeyVersion.id)
                        .where(models.KeyVersion.key_id == result.key_id)
                        .where(models.KeyVersion.state == "previous")
                    ).scalars()
                )
            for old_id in old_ids:
                self.retirer.retire_version(old_id, actor=result.actor or "keyops", why="grace 0")
        return result

    def _drive_many(
        self, rotation_ids: list[str], worker: str, progress: Callable[[RotationResult], None] | None
    ) -> list[RotationResult]:
        if not rotation_ids:
            return []
        results: list[RotationResult] = []

        def guarded(rotation_id: str) -> RotationResult | None:
            # One rotation's unexpected failure (the database went away, a bug)
            # must not lose the others' results; its lease lets it be resumed.
            try:
                return self._drive(rotation_id, worker)
            except Exception:
                log.exception(
                    "rotation stopped unexpectedly; it resumes when its lease expires",
                    extra={"rotation_id": rotation_id},
                )
                return None

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(rotation_ids))) as pool:
            for result in pool.map(guarded, rotation_ids):
                if result is None:
                    continue
                results.append(result)
                if progress is not None:
                    progress(result)
        return results

    # -- the scheduler's calls -----------------------------------------------

    def count_due(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        with self._sessions() as session:
            stmt = (
                select(func.count())
                .select_from(models.Key)
                .where(models.Key.state == KeyState.ACTIVE.value)
                .where(models.Key.next_rotation_at <= now)
            )
            return int(session.execute(stmt).scalar_one())

    def claim_due(self, now: datetime | None = None, *, worker_id: str | None = None, limit: int = 100) -> list[str]:
        """Create (and lease) rotations for due keys; returns their ids."""
        now = now or utcnow()
        worker = worker_id or self.worker_id
        ids: list[str] = []
        with self._sessions.begin() as session:
            graces: dict[str, int] = {}
            due = claims.due_keys(session, now, limit)
            busy = claims.with_unfinished_rotation(session, [key.id for key in due])
            for key in due:
                if key.id in busy:
                    continue
                if not key.destinations:
                    # Nobody would receive the new key: a scheduled rotation
                    # would only lock its consumers out when the grace ends.
                    log.warning("due key has no destinations; not rotating it", extra={"key": key.name})
                    continue
                if key.policy not in graces:
                    graces[key.policy] = self._policy_grace(session, key.policy)
                key.next_rotation_at = None  # claimed: nobody else sees it as due
                rotation = self._start(
                    session,
                    key,
                    worker,
                    now,
                    grace=graces[key.policy],
                    actor="keyops:scheduler",
                    reason="scheduled rotation",
                    trigger="schedule",
                )
                ids.append(rotation.id)
        return ids

    def rotate_due(
        self,
        now: datetime | None = None,
        *,
        worker_id: str | None = None,
        limit: int = 100,
        progress: Callable[[RotationResult], None] | None = None,
    ) -> list[RotationResult]:
        """Rotate up to ``limit`` due keys; each due rotation runs exactly once
        across every replica calling this at the same time."""
        worker = worker_id or self.worker_id
        return self._drive_many(self.claim_due(now, worker_id=worker, limit=limit), worker, progress)

    def resume(
        self,
        worker_id: str | None = None,
        only_expired_leases: bool = True,
        include_failed: bool = False,
        limit: int = 100,
        progress: Callable[[RotationResult], None] | None = None,
        now: datetime | None = None,
    ) -> list[RotationResult]:
        """Finish unfinished rotations: those of a dead worker (lease expired)
        and failed ones whose automatic retry time has come; with
        ``include_failed`` every failed one. ``only_expired_leases=False``
        also takes over rotations whose worker's lease is still live (use only
        when that worker is known to be dead). Also undoes ``keys issue
        --dest`` runs that died half-way (older than the lease, or any with
        ``only_expired_leases=False``), and revokes the pending version of a
        rotation that failed for good but still holds one."""
        worker = worker_id or self.worker_id
        now = now or utcnow()
        delivery.abandon_stale_issues(
            self._sessions, self._stores, now - self._lease if only_expired_leases else now, actor=f"keyops:{worker}"
        )
        self.runner.discard_abandoned()
        with self._sessions.begin() as session:
            orphaned = [h.rotation_id for h in self._live_leases(session, now) if dead_local_process(h.worker)]
            taken = claims.resumable(
                session,
                now,
                only_expired_leases=only_expired_leases,
                include_failed=include_failed,
                limit=limit,
                also=orphaned,
            )
            for rotation in taken:
                automatic = rotation.status == "failed" and not include_failed
                why = "automatic retry after a failure" if automatic else "resume"
                self._take(session, rotation, worker, now, actor=f"keyops:{worker}", reason=why)
            ids = [r.id for r in taken]
        return self._drive_many(ids, worker, progress)

    def _live_leases(self, session: Session, now: datetime) -> list[Holder]:
        stmt = (
            select(models.Rotation.id, models.Key.name, models.Rotation.lease_owner, models.Rotation.lease_expires_at)
            .join(models.Key, models.Key.id == models.Rotation.key_id)
            .where(models.Rotation.status == "running", models.Rotation.lease_expires_at > now)
            .order_by(models.Rotation.created_at)
        )
        return [Holder(rid, name, owner or "?", until or now) for rid, name, owner, until in session.execute(stmt)]

    def held(self, now: datetime | None = None) -> list[Holder]:
        """Running rotations whose worker's lease is live (and whose worker is
        not a dead process on this host): what ``resume`` leaves alone."""
        now = now or utcnow()
        with self._sessions() as session:
            return [
                h
                for h in self._live_leases(session, now)
                if h.worker != self.worker_id and not dead_local_process(h.worker)
            ]

    def retire_ended_grace(self, now: datetime | None = None, worker_id: str | None = None) -> list[Retired]:
        retired = self.retirer.retire_ended_grace(now, worker_id=worker_id or self.worker_id)
        if self.janitor is not None:
            self.janitor.sweep(now)  # deactivated cloud credentials whose hold ended
        return retired

    def reconcile(self, repair: bool = False, *, actor: str = "keyops:reconcile") -> ReconcileReport:
        return self.reconciler.run(repair=repair, actor=actor)

    # -- reading -------------------------------------------------------------

    def show(self, rotation_id: str) -> RotationResult:
        with self._sessions() as session:
            full_id = resolve_id(
                session, models.Rotation.id, rotation_id, what="rotation", listing="keyops rotations list"
            )
            rotation = session.get(models.Rotation, full_id)
            if rotation is None:
                raise NotFoundError(f"no rotation {rotation_id!r} (see keyops rotations list)")
            return result_of(session, rotation)

    def list(self, *, status: str | None = None, key: str | None = None, limit: int = 100) -> list[RotationResult]:
        if status is not None and status not in ("running", "finished", "failed", "rolled_back"):
            raise InvalidInputError(f"unknown rotation status {status!r}: use running, finished, failed or rolled_back")
        stmt = select(models.Rotation).order_by(models.Rotation.created_at.desc()).limit(limit)
        with self._sessions() as session:
            if status:
                stmt = stmt.where(models.Rotation.status == status)
            if key:
                stmt = stmt.where(models.Rotation.key_id == find_key(session, key).id)
            return [result_of(session, r) for r in session.execute(stmt).scalars()]
