"""Ending grace periods: previous versions leave every store, then the inventory.

A previous version is retired when its grace has ended, or earlier when its
key's policy sets ``retire_when_idle`` and the version has been idle that
long: no use since the later of its supersession and its own last use
(``KeyVersion.last_used_at``, moved forward by verify's VALID and
RATE_LIMITED answers and by usage events that name the key by hash). Traffic
on the new version therefore does not keep the previous one alive. Only when
no version of the key has any recorded use (a gateway that reports usage by
``key_id`` alone and does not verify through keyops) is the key's own
``last_used_at`` taken instead: either version may have been used, so the
conservative reading keeps the previous one. A version is never retired while
the rotation that superseded it is unfinished: some store may still serve it
as current.

Claims: candidates are read with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), the
store calls run outside any transaction, and the final transaction re-checks
the version's state under a row lock, so two replicas retiring the same
version do the (idempotent) store calls twice at worst and record it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.domain.specs import RotationPolicy
from keyops.domain.states import VersionState
from keyops.errors import KeyOpsError, StoreError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.issuers import IssuerContext, IssuerRegistry, NativeOnly
from keyops.lifecycle import claims
from keyops.lifecycle.specs import policy_from_row
from keyops.stores.registry import StoreRegistry

log = logging.getLogger("keyops.rotation.retire")


@dataclass(frozen=True)
class Retired:
    key_id: str
    key_name: str
    version: int
    why: str  # "grace ended" | "idle" | "grace 0"
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class _Candidate:
    version_id: str
    key_id: str
    key_name: str
    number: int
    destinations: tuple[str, ...]
    why: str
    # Who minted it: a cloud credential is deactivated once no store serves it.
    issuer: str = "native"
    external_id: str | None = None
    issuer_config: dict[str, Any] = field(default_factory=dict)


def _policies(session: Session) -> dict[str, RotationPolicy]:
    return {row.name: policy_from_row(row) for row in session.execute(select(models.RotationPolicy)).scalars()}


def _tracked_keys(session: Session, key_ids: set[str]) -> set[str]:
    """The keys with per-version usage recorded on at least one version."""
    v = models.KeyVersion
    found: set[str] = set()
    ids = sorted(key_ids)
    for i in range(0, len(ids), 500):
        found.update(
            session.execute(
                select(v.key_id).where(v.key_id.in_(ids[i : i + 500]), v.last_used_at.is_not(None)).distinct()
            ).scalars()
        )
    return found


def _superseded_at(session: Session, version: models.KeyVersion) -> tuple[datetime | None, bool]:
    """When the version stopped being current, and whether that rotation is done."""
    rotation = (
        session.execute(select(models.Rotation).where(models.Rotation.old_version_id == version.id).limit(1))
        .scalars()
        .first()
    )
    if rotation is None:
        return None, True
    started = version.grace_ends_at - timedelta(seconds=rotation.grace_seconds) if version.grace_ends_at else None
    return started, rotation.status == "finished"


class Retirer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        stores: StoreRegistry,
        *,
        issuers: IssuerRegistry | NativeOnly | None = None,
    ) -> None:
        self._sessions = sessions
        self._stores = stores
        self._issuers = issuers

    def candidates(self, now: datetime, limit: int) -> list[_Candidate]:
        found: list[_Candidate] = []
        with self._sessions.begin() as session:
            policies = _policies(session)
            idle_periods = {name: seconds for name, p in policies.items() if (seconds := p.retire_when_idle)}
            idle = tuple(idle_periods)
            versions = claims.previous_versions_due(
                session,
                now,
                limit,
                idle,
                idle_before=now - timedelta(seconds=min(idle_periods.values())) if idle_periods else None,
            )
            tracked = _tracked_keys(session, {v.key_id for v in versions}) if idle else set()
            for version in versions:
                key = session.get(models.Key, version.key_id)
                assert key is not None
                superseded, finished = _superseded_at(session, version)
                if not finished:
                    continue
                why = ""
                if version.grace_ends_at is None or version.grace_ends_at <= now:
                    why = "grace ended"
                else:
                    policy = policies.get(key.policy)
                    idle_for = policy.retire_when_idle if policy else None
                    moments = [version.last_used_at, superseded, version.activated_at]
                    if key.id not in tracked:
                        # No per-version usage for this key at all: its own
                        # last use is the conservative bound.
                        moments.append(key.last_used_at)
                    known = [d for d in moments if d is not None]
                    since = max(known) if known else None
                    if idle_for and since is not None and (now - since).total_seconds() >= idle_for:
                        why = "idle"
                if why:
                    found.append(
                        _Candidate(
                            version.id,
                            key.id,
                            key.name,
                            version.number,
                            tuple(d.uri for d in key.destinations),
                            why,
                            key.issuer,
                            version.external_id,
                            dict(key.issuer_config or {}),
                        )
                    )
        return found

    def retire_ended_grace(self, now: datetime | None = None, *, worker_id: str, limit: int = 500) -> list[Retired]:
        now = now or utcnow()
        return [self.retire_one(c, actor=f"keyops:{worker_id}") for c in self.candidates(now, limit)]

    def retire_version(self, version_id: str, *, actor: str, why: str) -> Retired | None:
        with self._sessions() as session:
            version = session.get(models.KeyVersion, version_id)
            if version is None or version.state != VersionState.PREVIOUS.value:
                return None
            key = session.get(models.Key, version.key_id)
            assert key is not None
            candidate = _Candidate(
                version.id,
                key.id,
                key.name,
                version.number,
                tuple(d.uri for d in key.destinations),
                why,
                key.issuer,
                version.external_id,
                dict(key.issuer_config or {}),
            )
        return self.retire_one(candidate, actor=actor)

    def retire_one(self, c: _Candidate, *, actor: str) -> Retired:
        for uri in c.destinations:
            try:
                dest, store = self._stores.resolve(uri)
                store.retire(dest, c.version_id)
            except StoreError as exc:
                log.warning(
                    "could not retire a previous version from a store; will retry",
                    extra={"key": c.key_name, "version": c.number, "destination": uri, "error": exc.message},
                )
                return Retired(c.key_id, c.key_name, c.number, c.why, error=f"{uri}: {exc.message}")
        if c.issuer != "native" and self._issuers is not None:
            # No store serves it any more: now it may stop working (deleted after the hold).
            try:
                ctx = IssuerContext(key_id=c.key_id, key_name=c.key_name, config=c.issuer_config)
                self._issuers.get(c.issuer).deactivate(ctx, c.external_id)
            except KeyOpsError as exc:
                log.warning(
                    "could not deactivate a previous version at its issuer; will retry",
                    extra={"key": c.key_name, "version": c.number, "issuer": c.issuer, "error": exc.message},
                )
                return Retired(c.key_id, c.key_name, c.number, c.why, error=f"{c.issuer}: {exc.message}")
        with self._sessions.begin() as session:
            version = session.execute(
                select(models.KeyVersion).where(models.KeyVersion.id == c.version_id).with_for_update()
            ).scalar_one_or_none()
            if version is None or version.state != VersionState.PREVIOUS.value:
                return Retired(c.key_id, c.key_name, c.number, c.why)
            version.state = VersionState.RETIRED.value
            version.retired_at = utcnow()
            audit.append(
                session,
                actor=actor,
                action="key.version_retired",
                key_id=c.key_id,
                key_name=c.key_name,
                reason=c.why,
                details={"version": c.number, "destinations": list(c.destinations)},
            )
        return Retired(c.key_id, c.key_name, c.number, c.why)
