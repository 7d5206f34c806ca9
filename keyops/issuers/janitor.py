"""Ending cloud credentials for good: deactivate revoked ones, delete after the hold.

The retirer deactivates a previous version's credential when its grace ends
(after every store dropped it). This sweep does the rest, for every key whose
issuer holds material outside keyops (``aws-iam``):

* a **revoked** version's credential is deactivated at once (revoke means it
  stops working now), and
* while a key is **suspended**, its current and previous credentials are
  deactivated, and reactivated when it is resumed (``suspended`` in
  ``issuer_config`` lists the ones keyops turned off), and
* a retired or revoked version's credential is **deleted** once
  ``issuers.aws_iam.delete_hold`` has passed since it was retired/revoked.
  Until then an operator can re-enable it by hand if retiring it broke
  something.

What was done is recorded in the key's ``issuer_config`` (``deactivated`` /
``deleted``: lists of access key ids, which are not secret) and in the audit
log, so each credential is handled once. Every vendor call is idempotent, so a
crash between the call and the commit only repeats the call. Called from
``RotationEngine.retire_ended_grace`` (the scheduler) and after ``keys revoke``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from keyops import audit
from keyops.domain.states import KeyState, VersionState
from keyops.errors import KeyOpsError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.issuers import IssuerContext, IssuerRegistry

log = logging.getLogger("keyops.issuers.janitor")
_REASONS = {"deactivated": "revoked", "deleted": "hold ended", "suspended": "key suspended", "resumed": "key resumed"}
DONE_STATES = (VersionState.RETIRED.value, VersionState.REVOKED.value)
LIVE_STATES = (VersionState.CURRENT.value, VersionState.PREVIOUS.value)


@dataclass(frozen=True)
class Swept:
    key_name: str
    external_id: str
    action: str  # "deactivated" | "deleted" | "suspended" | "resumed"
    error: str = ""


@dataclass(frozen=True)
class _Work:
    key_id: str
    key_name: str
    issuer: str
    config: dict[str, object]
    external_id: str
    action: str


class IssuerJanitor:
    def __init__(self, sessions: sessionmaker[Session], issuers: IssuerRegistry) -> None:
        self._sessions = sessions
        self._issuers = issuers

    def _plan(self, now: datetime, key_id: str | None) -> list[_Work]:
        hold = timedelta(seconds=self._issuers.delete_hold)
        work: list[_Work] = []
        with self._sessions() as session:
            stmt = select(models.Key).where(models.Key.issuer != "native").options(selectinload(models.Key.versions))
            if key_id is not None:
                stmt = stmt.where(models.Key.id == key_id)
            for key in session.execute(stmt).scalars():
                config = dict(key.issuer_config or {})
                deactivated = set(config.get("deactivated") or [])
                deleted = set(config.get("deleted") or [])
                suspended = set(config.get("suspended") or [])
                for version in key.versions:
                    eid = version.external_id
                    if not eid or version.state not in LIVE_STATES:
                        continue
                    if key.state == KeyState.SUSPENDED.value and eid not in suspended:
                        work.append(_Work(key.id, key.name, key.issuer, config, eid, "suspended"))
                    elif key.state == KeyState.ACTIVE.value and eid in suspended:
                        work.append(_Work(key.id, key.name, key.issuer, config, eid, "resumed"))
                for version in key.versions:
                    eid = version.external_id
                    if not eid or eid in deleted or version.state not in DONE_STATES:
                        continue
                    ended = version.revoked_at if version.state == VersionState.REVOKED.value else version.retired_at
                    if version.state == VersionState.REVOKED.value and eid not in deactivated:
                        work.append(_Work(key.id, key.name, key.issuer, config, eid, "deactivated"))
                    if ended is None or ended + hold <= now:
                        work.append(_Work(key.id, key.name, key.issuer, config, eid, "deleted"))
        return work

    def sweep(self, now: datetime | None = None, *, key_id: str | None = None, actor: str = "keyops") -> list[Swept]:
        """Do what is due; never raises for a vendor failure (it is retried
        on the next sweep and logged)."""
        now = now or utcnow()
        done: list[Swept] = []
        for item in self._plan(now, key_id):
            ctx = IssuerContext(key_id=item.key_id, key_name=item.key_name, config=item.config)
            try:
                issuer = self._issuers.get(item.issuer)
                if item.action in ("deactivated", "suspended"):
                    issuer.deactivate(ctx, item.external_id)
                elif item.action == "resumed":
                    issuer.reactivate(ctx, item.external_id)
                else:
                    issuer.delete(ctx, item.external_id)
            except KeyOpsError as exc:
                log.warning(
                    "could not end a cloud credential; will retry",
                    extra={"key": item.key_name, "access_key_id": item.external_id, "error": exc.message},
                )
                done.append(Swept(item.key_name, item.external_id, item.action, exc.message))
                continue
            self._record(item, actor)
            done.append(Swept(item.key_name, item.external_id, item.action))
        return done

    def _record(self, item: _Work, actor: str) -> None:
        with self._sessions.begin() as session:
            key = session.execute(
                select(models.Key).where(models.Key.id == item.key_id).with_for_update()
            ).scalar_one_or_none()
            if key is None:
                return
            config = dict(key.issuer_config or {})
            if item.action == "resumed":
                held = list(config.get("suspended") or [])
                if item.external_id not in held:
                    return
                config["suspended"] = [i for i in held if i != item.external_id]
            else:
                seen = list(config.get(item.action) or [])
                if item.external_id in seen:
                    return
                config[item.action] = [*seen, item.external_id]
            key.issuer_config = config
            audit.append(
                session,
                actor=actor,
                action=f"key.credential_{item.action}",
                key_id=key.id,
                key_name=key.name,
                reason=_REASONS[item.action],
                details={"issuer": item.issuer, "access_key_id": item.external_id},
            )
