"""Driving one rotation through its persisted steps.

planned -> material_created -> pending -> tested -> activated -> promoted -> finished

* material_created: the new version's hash is in the inventory (state
  ``pending``) *before* any store sees the material, so no destination ever
  holds material the inventory does not know (invariant 3).
* pending: each destination gets the pending version; each success is
  recorded (``steps``) before the next destination is tried.
* tested: every destination's pending copy is read back and its hash checked.
* activated: one transaction makes the new version current and the old one
  previous (valid until its grace ends): from here verify accepts both, so
  consumers reading any destination at any moment get a valid key
  (invariant 2).
* promoted: each destination makes the new version current.
* finished: done; with grace 0 the old version is retired at once.

Every step is idempotent, and each is committed before the next begins, so a
process killed anywhere is resumed by the next worker that claims the
rotation. The plaintext exists only in this process's memory and in the
stores: on resume it is read back from a destination that holds the pending
version (checked against the inventory's hash), or, if no store got it yet,
fresh material replaces it.

Failures of a store are retried with exponential backoff and jitter up to
``rotation.max_attempts`` per step; then the rotation is marked failed,
loudly (error log, ``rotation.failed`` audit event, a high-severity finding)
and the current key stays as it was; the daemon tries it again later
(``rotation_failure``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyops.domain import keyformat
from keyops.domain.schedule import next_rotation_at
from keyops.domain.states import KeyState, VersionState
from keyops.errors import KeyOpsError, StoreConflictError, StoreError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.issuers import IssuerRegistry, NativeOnly
from keyops.lifecycle import backoff
from keyops.lifecycle.rotation_failure import Discarded, RetryPlan, discard_abandoned_pending, mark_failed
from keyops.lifecycle.rotation_result import RotationResult, result_of
from keyops.lifecycle.rotation_state import (
    LeaseLost,
    Snapshot,
    advance,
    audit_step,
    owned,
    read_snapshot,
    record,
    step_entry,
)
from keyops.lifecycle.specs import get_policy
from keyops.lifecycle.views import iso
from keyops.notify.outbox import emit
from keyops.stores.base import Destination, SecretStore
from keyops.stores.registry import StoreRegistry

log = logging.getLogger("keyops.rotation")
T = TypeVar("T")

STEPS = ("planned", "material_created", "pending", "tested", "activated", "promoted", "finished")
Checkpoint = Callable[[str, str], None]


class RotationRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        stores: StoreRegistry,
        *,
        key_prefix: str,
        max_attempts: int,
        backoff_initial: float,
        backoff_max: float,
        lease_seconds: int,
        checkpoint: Checkpoint | None = None,
        sleep: Callable[[float], None] = time.sleep,
        issuers: IssuerRegistry | NativeOnly | None = None,
        retry_plan: RetryPlan | None = None,
    ) -> None:
        self._sessions = sessions
        #: When a failed rotation is retried without a person asking.
        self.retry_plan = retry_plan or RetryPlan()
        #: Who mints material: the engine only talks to the Issuer interface.
        self.issuers = issuers if issuers is not None else NativeOnly(key_prefix)
        self._stores = stores
        self._prefix = key_prefix
        self._max_attempts = max_attempts
        self._initial = backoff_initial
        self._max = backoff_max
        self._lease = timedelta(seconds=lease_seconds)
        self.checkpoint = checkpoint
        #: Called as ``waiting(text)`` before each backoff sleep: what failed
        #: and when it is tried again (the CLI shows it, so a retry is not silent).
        self.waiting: Callable[[str], None] | None = None
        self._sleep = sleep

    # -- plumbing ------------------------------------------------------------

    def _mark(self, rotation_id: str, label: str) -> None:
        if self.checkpoint is not None:
            self.checkpoint(rotation_id, label)

    @contextlib.contextmanager
    def _owned(self, rotation_id: str, worker_id: str) -> Iterator[tuple[Session, models.Rotation]]:
        with owned(self._sessions, rotation_id, worker_id, self._lease) as held:
            yield held

    def _advance(self, rotation_id: str, worker_id: str, *entries: dict[str, Any], step: str | None = None) -> None:
        advance(self._sessions, rotation_id, worker_id, self._lease, entries, step)

    _record = staticmethod(record)

    def snapshot(self, rotation_id: str) -> Snapshot:
        with self._sessions() as session:
            return read_snapshot(session, rotation_id)

    def _retry(self, rotation_id: str, worker_id: str, what: str, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except StoreError as exc:
                if not exc.retryable or attempt >= self._max_attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise type(exc)(f"{what} failed{tries}: {exc.message}") from None
                wait = backoff.delay(attempt, initial=self._initial, maximum=self._max)
                log.warning(
                    "store step failed, retrying",
                    extra={
                        "rotation_id": rotation_id,
                        "step": what,
                        "attempt": attempt,
                        "error": exc.message,
                        "retry_in": round(wait, 2),
                    },
                )
                with self._owned(rotation_id, worker_id) as (_, rotation):
                    rotation.attempts = (rotation.attempts or 0) + 1
                    rotation.last_error = f"{what}: {exc.message}"
                if self.waiting is not None:
                    # attempt and wait first: a terminal line cuts the end
                    self.waiting(f"attempt {attempt + 1} of {self._max_attempts} in {wait:.1f}s; {what}: {exc.message}")
                self._sleep(wait)

    # -- the steps -----------------------------------------------------------

    def drive(self, rotation_id: str, worker_id: str, material: str | None = None) -> RotationResult:
        """Run the rotation from wherever it stands to the end (or to failure)."""
        handover: str | None = None
        finished: RotationResult | None = None
        try:
            handover, finished = self._drive(rotation_id, worker_id, material)
        except LeaseLost:
            log.warning("lost the lease on a rotation; another worker continues it", extra={"rotation_id": rotation_id})
        except KeyOpsError as exc:
            self.fail(rotation_id, worker_id, exc.message)
        result = finished or self.result(rotation_id)
        if result.ok and handover is not None:
            # No store receives this key: the caller must hand it over (once).
            result = result.with_plaintext(handover)
        return result

    def result(self, rotation_id: str) -> RotationResult:
        with self._sessions() as session:
            rotation = session.get(models.Rotation, rotation_id)
            assert rotation is not None
            return result_of(session, rotation)

    def _drive(
        self, rotation_id: str, worker_id: str, material: str | None
    ) -> tuple[str | None, RotationResult | None]:
        """The steps still to do; returns the new plaintext only when no
        destination received it (someone must be handed the key), and the
        result when this call finished the rotation."""
        snap = self.snapshot(rotation_id)
        if snap.step in ("planned", "material_created", "pending", "tested") and snap.key_state in (
            KeyState.REVOKED.value,
            KeyState.EXPIRED.value,
        ):
            self.roll_back(rotation_id, worker_id, f"the key is {snap.key_state}")
            return None, None
        if snap.step == "planned":
            material, snap = self._create_material(rotation_id, worker_id, snap)
        if snap.step in ("material_created", "pending", "tested") and material is None:
            material = self._recover_material(rotation_id, worker_id, snap)
            snap = self.snapshot(rotation_id)
        if snap.step == "material_created":
            assert material is not None
            self._put_pending(rotation_id, worker_id, snap, material)
            # Each step persisted its own progress; re-reading it would only
            # cost queries (the next steps need nothing else that changed).
            snap = replace(snap, step="pending")
        if snap.step == "pending":
            assert material is not None
            self._test(rotation_id, worker_id, snap, material)
            snap = replace(snap, step="tested")
        if snap.step == "tested":
            self._activate(rotation_id, worker_id)
            snap = replace(snap, step="activated")
        if snap.step == "activated":
            self._promote(rotation_id, worker_id, snap)
            snap = replace(snap, step="promoted")
        finished = self._finish(rotation_id, worker_id) if snap.step == "promoted" else None
        return (material if not snap.destinations else None), finished

    def _create_material(self, rotation_id: str, worker_id: str, snap: Snapshot) -> tuple[str, Snapshot]:
        """Mint the new material and record its version; returns the material
        and the snapshot as it now stands (built here rather than re-read:
        this transaction made the only changes the next steps look at)."""
        issuer = self.issuers.get(snap.issuer)
        if issuer.holds_material and snap.minting_since is None:
            # Persisted before the vendor mints: a crash after its call leaves
            # an orphan that the next attempt recognises (and removes) by time.
            with self._owned(rotation_id, worker_id) as (_, rotation):
                self._record(rotation, "minting")
            self._mark(rotation_id, "minting")
            snap = self.snapshot(rotation_id)
        mint = partial(issuer.mint, snap.issuer_ctx(snap.minting_since))
        fresh = self._retry(rotation_id, worker_id, f"mint with {snap.issuer}", mint)
        with self._owned(rotation_id, worker_id) as (session, rotation):
            numbers = session.execute(
                select(models.KeyVersion.number).where(models.KeyVersion.key_id == snap.key_id)
            ).scalars()
            version = models.KeyVersion(
                key_id=snap.key_id,
                number=max(numbers, default=0) + 1,
                state=VersionState.PENDING.value,
                secret_hash=fresh.secret_hash,
                display_prefix=fresh.display_prefix,
                external_id=fresh.external_id,
                rotation_id=rotation_id,
            )
            session.add(version)
            session.flush()
            rotation.new_version_id = version.id
            rotation.step = "material_created"
            self._record(rotation, "material_created", version=version.number, display_prefix=fresh.display_prefix)
            snap = replace(
                snap,
                step="material_created",
                new_version_id=version.id,
                new_version_number=version.number,
                new_secret_hash=fresh.secret_hash,
                new_external_id=fresh.external_id,
                known_ids=snap.known_ids | ({fresh.external_id} if fresh.external_id else set()),
            )
        self._mark(rotation_id, "material_created")
        return fresh.material, snap

    def _recover_material(self, rotation_id: str, worker_id: str, snap: Snapshot) -> str:
        """Read the pending plaintext back from a store that holds it; if none
        does (the crash came before the first delivery), replace it."""
        assert snap.new_version_id is not None
        holders = 0
        for uri in snap.destinations:
            dest, store = self._stores.resolve(uri)
            stored = self._retry(
                rotation_id,
                worker_id,
                f"read back {uri}",
                partial(store.read_version, dest, snap.new_version_id or ""),
            )
            if stored is None:
                continue
            holders += 1
            if keyformat.hash_key(stored.material) == snap.new_secret_hash:
                return str(stored.material)
        if holders:
            raise StoreConflictError(
                f"rotation {rotation_id}: the stores hold version {snap.new_version_number} with material whose "
                f"hash the inventory does not know; run keyops reconcile"
            )
        issuer = self.issuers.get(snap.issuer)
        # Minted but never delivered (its plaintext died with a crashed worker).
        discard = partial(issuer.discard, snap.issuer_ctx(), snap.new_external_id)
        self._retry(rotation_id, worker_id, f"discard with {snap.issuer}", discard)
        mint = partial(issuer.mint, snap.issuer_ctx(snap.minting_since or utcnow()))
        fresh = self._retry(rotation_id, worker_id, f"mint with {snap.issuer}", mint)
        with self._owned(rotation_id, worker_id) as (session, rotation):
            version = session.get(models.KeyVersion, snap.new_version_id)
            assert version is not None
            version.secret_hash = fresh.secret_hash
            version.display_prefix = fresh.display_prefix
            version.external_id = fresh.external_id
            rotation.step = "material_created"
            rotation.steps = [e for e in (rotation.steps or []) if e.get("step") != "pending"]
            self._record(rotation, "material_recreated", display_prefix=fresh.display_prefix)
        return fresh.material

    def _put_pending(self, rotation_id: str, worker_id: str, snap: Snapshot, material: str) -> None:
        assert snap.new_version_id is not None
        self._each_destination(
            rotation_id,
            worker_id,
            snap,
            "pending",
            lambda store, dest: store.put_pending(dest, snap.new_version_id or "", material, snap.ctx()),
            "put pending in",
        )

    def _each_destination(
        self,
        rotation_id: str,
        worker_id: str,
        snap: Snapshot,
        step: str,
        operation: Callable[[SecretStore, Destination], None],
        what: str,
    ) -> None:
        """Run ``operation`` on every destination not yet logged as done for
        ``step``, logging each as it completes; the last one's log entry also
        moves the rotation to ``step`` (one transaction for both)."""
        todo = [uri for uri in snap.destinations if f"{step}:{uri}" not in snap.done]
        for uri in todo:
            dest, store = self._stores.resolve(uri)
            self._retry(rotation_id, worker_id, f"{what} {uri}", partial(operation, store, dest))
            last = uri == todo[-1]
            entries = [step_entry(step, uri), *([step_entry(f"{step}_everywhere")] if last else [])]
            self._advance(rotation_id, worker_id, *entries, step=step if last else None)
            self._mark(rotation_id, f"{step}:{uri}")
        if not todo:
            self._advance(rotation_id, worker_id, step_entry(f"{step}_everywhere"), step=step)
        self._mark(rotation_id, step)

    def _test(self, rotation_id: str, worker_id: str, snap: Snapshot, material: str) -> None:
        for uri in snap.destinations:
            dest, store = self._stores.resolve(uri)
            stored = self._retry(
                rotation_id,
                worker_id,
                f"test {uri}",
                partial(store.read_version, dest, snap.new_version_id or ""),
            )
            if stored is None or keyformat.hash_key(stored.material) != snap.new_secret_hash:
                raise StoreConflictError(
                    f"{uri} does not hold the pending version {snap.new_version_number} keyops wrote; "
                    f"something changed it: run keyops reconcile"
                )
        issuer = self.issuers.get(snap.issuer)
        check = partial(issuer.test, snap.issuer_ctx(), material)
        self._retry(rotation_id, worker_id, f"test with {snap.issuer}", check)
        self._advance(rotation_id, worker_id, step_entry("tested"), step="tested")
        self._mark(rotation_id, "tested")

    def _activate(self, rotation_id: str, worker_id: str) -> None:
        with self._owned(rotation_id, worker_id) as (session, rotation):
            key = session.execute(
                select(models.Key).where(models.Key.id == rotation.key_id).with_for_update()
            ).scalar_one()
            versions = list(
                session.execute(select(models.KeyVersion).where(models.KeyVersion.key_id == key.id)).scalars()
            )
            new = next(v for v in versions if v.id == rotation.new_version_id)
            # Read before any change: a query after them would autoflush them
            # once here and once more at the audit append.
            policy = get_policy(session, key.policy)
            now = utcnow()
            old_numbers = []
            for version in versions:
                if version.state == VersionState.CURRENT.value and version.id != new.id:
                    version.state = VersionState.PREVIOUS.value
                    version.grace_ends_at = now + timedelta(seconds=rotation.grace_seconds)
                    rotation.old_version_id = version.id
                    old_numbers.append(version.number)
            if new.state == VersionState.PENDING.value:
                new.state = VersionState.CURRENT.value
                new.activated_at = now
            key.last_rotated_at = now
            key.updated_at = now
            key.next_rotation_at = (
                next_rotation_at(policy, from_time=now, key_id=key.id, rotation_count=len(versions) - 1)
                if key.state == KeyState.ACTIVE.value
                else None
            )
            rotation.step = "activated"
            self._record(rotation, "activated", version=new.number)
            audit_step(
                session,
                rotation,
                key,
                "key.rotated",
                {
                    "rotation_id": rotation.id,
                    "trigger": rotation.trigger,
                    "version": new.number,
                    "display_prefix": new.display_prefix,
                    "previous_versions": old_numbers,
                    "grace_seconds": rotation.grace_seconds,
                },
            )
        self._mark(rotation_id, "activated")

    def _promote(self, rotation_id: str, worker_id: str, snap: Snapshot) -> None:
        self._each_destination(
            rotation_id,
            worker_id,
            snap,
            "promoted",
            lambda store, dest: store.promote(dest, snap.new_version_id or "", snap.ctx()),
            "promote in",
        )

    def _finish(self, rotation_id: str, worker_id: str) -> RotationResult:
        """The last step; returns the rotation's result, read from the rows this
        transaction already holds (no second round of queries to report it)."""
        with self._owned(rotation_id, worker_id) as (session, rotation):
            now = utcnow()
            rotation.step = "finished"
            rotation.status = "finished"
            rotation.finished_at = now
            rotation.lease_owner = None
            rotation.lease_expires_at = None
            rotation.last_error = ""
            self._record(rotation, "finished")
            key = session.get(models.Key, rotation.key_id)
            assert key is not None
            audit_step(
                session, rotation, key, "rotation.finished", {"rotation_id": rotation.id, "trigger": rotation.trigger}
            )
            # Announced only now, when every destination serves the new
            # version: a consumer that reloads on key.rotated gets it.
            new = session.get(models.KeyVersion, rotation.new_version_id) if rotation.new_version_id else None
            old = session.get(models.KeyVersion, rotation.old_version_id) if rotation.old_version_id else None
            emit(
                session,
                "key.rotated",
                key.id,
                {
                    "key_id": key.id,
                    "key_name": key.name,
                    "owner": key.owner,
                    "version": new.number if new else None,
                    "display_prefix": new.display_prefix if new else None,
                    "previous_version": old.number if old else None,
                    "grace_ends_at": iso(old.grace_ends_at) if old else None,
                    "rotation_id": rotation.id,
                    "trigger": rotation.trigger,
                    "actor": rotation.actor,
                    "reason": rotation.reason,
                },
            )
            finished = result_of(session, rotation)
        self._mark(rotation_id, "finished")
        return finished

    # -- the unhappy endings -------------------------------------------------

    def fail(self, rotation_id: str, worker_id: str, message: str) -> None:
        """Mark the rotation failed, loudly, with its automatic retry time
        (see ``rotation_failure``)."""
        snap = self.snapshot(rotation_id)
        discarded = mark_failed(self._sessions, self._lease, self.retry_plan, rotation_id, worker_id, message)
        if discarded is not None:
            self._clean_up_discarded(snap, discarded)

    def discard_abandoned(self) -> int:
        """Revoke pending versions that rotations failed for good still hold
        (see ``discard_abandoned_pending``); returns how many."""
        found = discard_abandoned_pending(self._sessions)
        for snap, discarded in found:
            self._clean_up_discarded(snap, discarded)
        return len(found)

    def _clean_up_discarded(self, snap: Snapshot, discarded: Discarded) -> None:
        """Best effort, once: remove a revoked pending version's copies from
        the stores and its material from the issuer. The stores are what just
        failed, so this may fail too; the version is revoked in the inventory
        either way (verify refuses it), and ``keyops reconcile --repair``
        removes copies left behind."""
        for uri in snap.destinations:
            try:
                dest, store = self._stores.resolve(uri)
                store.retire(dest, discarded.version_id)
            except KeyOpsError as exc:
                log.warning(
                    "could not remove a discarded pending version from a store; reconcile --repair removes it",
                    extra={"rotation_id": snap.rotation_id, "destination": uri, "error": exc.message},
                )
        try:
            self.issuers.get(snap.issuer).discard(snap.issuer_ctx(), discarded.external_id)
        except KeyOpsError as exc:
            log.warning(
                "could not discard the issuer's material of a discarded pending version",
                extra={"rotation_id": snap.rotation_id, "error": exc.message},
            )

    def roll_back(self, rotation_id: str, worker_id: str, why: str) -> None:
        """Undo a rotation that was not activated: its pending version leaves
        every store and is retired in the inventory."""
        snap = self.snapshot(rotation_id)
        if snap.new_version_id is not None:
            for uri in snap.destinations:
                dest, store = self._stores.resolve(uri)
                self._retry(
                    rotation_id,
                    worker_id,
                    f"remove pending from {uri}",
                    partial(store.retire, dest, snap.new_version_id or ""),
                )
            issuer = self.issuers.get(snap.issuer)
            discard = partial(issuer.discard, snap.issuer_ctx(), snap.new_external_id)
            self._retry(rotation_id, worker_id, "discard the new material", discard)
        with self._owned(rotation_id, worker_id) as (session, rotation):
            if rotation.new_version_id:
                version = session.get(models.KeyVersion, rotation.new_version_id)
                if version is not None and version.state == VersionState.PENDING.value:
                    version.state = VersionState.RETIRED.value
                    version.retired_at = utcnow()
            rotation.status = "rolled_back"
            rotation.finished_at = utcnow()
            rotation.lease_owner = None
            rotation.lease_expires_at = None
            self._record(rotation, "rolled_back", reason=why)
            key = session.get(models.Key, rotation.key_id)
            assert key is not None
            audit_step(session, rotation, key, "rotation.rolled_back", {"rotation_id": rotation.id}, reason=why)
