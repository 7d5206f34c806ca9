"""Issue, list, show, suspend, resume, revoke and update keys.

Each operation is one transaction that changes the key and appends its audit
event together: either both happen or neither does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from keyops import audit
from keyops.domain import keyformat
from keyops.domain.names import validate_key_name, validate_owner
from keyops.domain.schedule import next_rotation_at
from keyops.domain.states import KeyState, VersionState, key_transition
from keyops.errors import DuplicateNameError, InvalidInputError, NotFoundError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle.specs import get_policy, get_profile
from keyops.lifecycle.views import KeyView
from keyops.notify.outbox import emit
from keyops.stores.registry import StoreRegistry

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_REASON_LENGTH = 1000
_AUDIT_ACTIONS = {"suspend": "key.suspended", "resume": "key.resumed", "revoke": "key.revoked", "expire": "key.expired"}


@dataclass(frozen=True)
class IssuedKey:
    """The result of issuing: the view, and the plaintext shown exactly once."""

    key: KeyView
    plaintext: str

    def __repr__(self) -> str:
        return f"IssuedKey(key={self.key.name!r})"


def _reason(reason: str) -> str:
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInputError(f"reason is too long ({len(reason)} characters, at most {MAX_REASON_LENGTH})")
    return reason


def find_key(session: Session, name_or_id: str, *, for_update: bool = False) -> models.Key:
    stmt: Select[models.Key] = select(models.Key).options(
        selectinload(models.Key.versions), selectinload(models.Key.destinations)
    )
    if _UUID_RE.match(name_or_id):
        stmt = stmt.where(models.Key.id == name_or_id)
    else:
        stmt = stmt.where(models.Key.name == name_or_id)
    if for_update:
        stmt = stmt.with_for_update(of=models.Key)
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no key named {name_or_id!r} (see keyops keys list)")
    return row


class KeyService:
    def __init__(
        self, sessions: sessionmaker[Session], *, key_prefix: str, stores: StoreRegistry | None = None
    ) -> None:
        self._sessions = sessions
        self._prefix = key_prefix
        #: Set by bootstrap; needed only to deliver to destinations.
        self.stores = stores

    def issue(
        self,
        name: str,
        *,
        owner: str,
        profile: str,
        policy: str,
        actor: str,
        reason: str = "",
        description: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        validate_key_name(name)
        validate_owner(owner)
        _reason(reason)
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidInputError("expiry must be in the future")
        material = keyformat.generate(self._prefix)
        try:
            with self._sessions.begin() as session:
                if session.execute(select(models.Key.id).where(models.Key.name == name)).first() is not None:
                    raise DuplicateNameError(f"a key named {name!r} already exists (names are unique)")
                get_profile(session, profile)
                rotation_policy = get_policy(session, policy)
                now = utcnow()
                key = models.Key(
                    name=name,
                    owner=owner,
                    profile=profile,
                    policy=policy,
                    issuer="native",
                    state=KeyState.ACTIVE.value,
                    description=description,
                    created_at=now,
                    updated_at=now,
                    expires_at=expires_at,
                )
                session.add(key)
                session.flush()
                key.next_rotation_at = next_rotation_at(rotation_policy, from_time=now, key_id=key.id, rotation_count=0)
                version = models.KeyVersion(
                    key_id=key.id,
                    number=1,
                    state=VersionState.CURRENT.value,
                    secret_hash=material.secret_hash,
                    display_prefix=material.display_prefix,
                    created_at=now,
                    activated_at=now,
                )
                session.add(version)
                session.flush()
                audit.append(
                    session,
                    actor=actor,
                    action="key.issued",
                    key_id=key.id,
                    key_name=name,
                    reason=reason,
                    details={
                        "owner": owner,
                        "profile": profile,
                        "policy": policy,
                        "version": 1,
                        "display_prefix": material.display_prefix,
                    },
                )
                session.refresh(key)
                view = KeyView.of(key)
        except IntegrityError:
            # Lost a race with another process issuing the same name.
            raise DuplicateNameError(f"a key named {name!r} already exists (names are unique)") from None
        return IssuedKey(key=view, plaintext=material.plaintext)

    def show(self, name_or_id: str) -> KeyView:
        with self._sessions() as session:
            return KeyView.of(find_key(session, name_or_id))

    def list(
        self,
        *,
        owner: str | None = None,
        state: str | None = None,
        profile: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[KeyView]:
        if state is not None and state not in {s.value for s in KeyState}:
            raise InvalidInputError(f"unknown state {state!r}: use one of {', '.join(s.value for s in KeyState)}")
        stmt = select(models.Key).options(selectinload(models.Key.versions), selectinload(models.Key.destinations))
        if owner:
            stmt = stmt.where(models.Key.owner == owner)
        if state:
            stmt = stmt.where(models.Key.state == state)
        if profile:
            stmt = stmt.where(models.Key.profile == profile)
        stmt = stmt.order_by(models.Key.name).limit(limit).offset(offset)
        with self._sessions() as session:
            return [KeyView.of(row) for row in session.execute(stmt).scalars()]

    def count(self) -> int:
        with self._sessions() as session:
            return int(session.execute(select(func.count()).select_from(models.Key)).scalar_one())

    def _transition(self, name_or_id: str, action: str, *, actor: str, reason: str) -> KeyView:
        _reason(reason)
        with self._sessions.begin() as session:
            key = find_key(session, name_or_id, for_update=True)
            previous = key.state
            target = key_transition(key.state, action, key.name)
            now = utcnow()
            key.state = target.value
            key.state_reason = reason
            key.updated_at = now
            revoked_versions: list[int] = []
            if target is KeyState.REVOKED:
                for version in key.versions:
                    if version.state != VersionState.REVOKED.value:
                        version.state = VersionState.REVOKED.value
                        version.revoked_at = now
                        revoked_versions.append(version.number)
                key.next_rotation_at = None
            audit.append(
                session,
                actor=actor,
                action=_AUDIT_ACTIONS[action],
                key_id=key.id,
                key_name=key.name,
                reason=reason,
                details={"from": previous, "to": target.value, "versions_revoked": revoked_versions},
            )
            payload = {"key_id": key.id, "key_name": key.name, "owner": key.owner, "state": target.value}
            emit(session, _AUDIT_ACTIONS[action], key.id, {**payload, "reason": reason, "actor": actor})
            session.flush()
            return KeyView.of(key)

    def suspend(self, name_or_id: str, *, actor: str, reason: str = "") -> KeyView:
        return self._transition(name_or_id, "suspend", actor=actor, reason=reason)

    def resume(self, name_or_id: str, *, actor: str, reason: str = "") -> KeyView:
        return self._transition(name_or_id, "resume", actor=actor, reason=reason)

    def revoke(self, name_or_id: str, *, actor: str, reason: str = "") -> KeyView:
        return self._transition(name_or_id, "revoke", actor=actor, reason=reason)

    def update(
        self,
        name_or_id: str,
        *,
        actor: str,
        reason: str = "",
        owner: str | None = None,
        profile: str | None = None,
        policy: str | None = None,
    ) -> KeyView:
        """Change owner, profile or policy; each change is audited."""
        _reason(reason)
        if owner is None and profile is None and policy is None:
            raise InvalidInputError("nothing to change: give --owner, --profile or --policy")
        if owner is not None:
            validate_owner(owner)
        with self._sessions.begin() as session:
            key = find_key(session, name_or_id, for_update=True)
            changes: dict[str, dict[str, str]] = {}
            if profile is not None and profile != key.profile:
                get_profile(session, profile)
                changes["profile"] = {"from": key.profile, "to": profile}
                key.profile = profile
            if policy is not None and policy != key.policy:
                rotation_policy = get_policy(session, policy)
                changes["policy"] = {"from": key.policy, "to": policy}
                key.policy = policy
                base = key.last_rotated_at or key.created_at
                count = sum(1 for v in key.versions) - 1
                key.next_rotation_at = (
                    next_rotation_at(rotation_policy, from_time=base, key_id=key.id, rotation_count=count)
                    if key.state == KeyState.ACTIVE.value
                    else None
                )
            if owner is not None and owner != key.owner:
                changes["owner"] = {"from": key.owner, "to": owner}
                key.owner = owner
            if changes:
                key.updated_at = utcnow()
                audit.append(
                    session,
                    actor=actor,
                    action="key.updated",
                    key_id=key.id,
                    key_name=key.name,
                    reason=reason,
                    details={"changes": changes},
                )
            session.flush()
            return KeyView.of(key)
