"""Issue, list, show, suspend, resume, revoke and update keys.

Each operation is one transaction that changes the key and appends its audit
event together: either both happen or neither does.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from keyops import audit
from keyops.domain import keyformat
from keyops.domain.abbrev import PREFIX_RE
from keyops.domain.names import validate_key_name, validate_owner
from keyops.domain.redact import redact
from keyops.domain.schedule import next_rotation_at
from keyops.domain.states import KeyState, VersionState, key_transition
from keyops.errors import DuplicateNameError, InvalidInputError, KeyOpsError, NotFoundError
from keyops.inventory import models
from keyops.inventory.idprefix import resolve_id
from keyops.inventory.types import utcnow
from keyops.lifecycle import delivery
from keyops.lifecycle.specs import get_policy, get_profile
from keyops.lifecycle.views import KeyView
from keyops.notify.outbox import emit
from keyops.stores.registry import StoreRegistry

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_REASON_LENGTH = 1000
log = logging.getLogger("keyops.keys")
_AUDIT_ACTIONS = {"suspend": "key.suspended", "resume": "key.resumed", "revoke": "key.revoked", "expire": "key.expired"}


@dataclass(frozen=True)
class IssueRequest:
    """One key to issue (``issue_many``; ``keys issue --from-file``)."""

    name: str
    owner: str
    profile: str
    policy: str
    description: str = ""
    expires_at: datetime | None = None


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
    if _UUID_RE.fullmatch(name_or_id):
        where = models.Key.id == name_or_id
    elif "/" not in name_or_id and PREFIX_RE.fullmatch(name_or_id.lower()):
        # Not a name (names are team/name): an id prefix, as keys list shows ids.
        key_id = resolve_id(session, models.Key.id, name_or_id, what="key", listing="keyops keys list")
        where = models.Key.id == key_id
    else:
        where = models.Key.name == name_or_id
    stmt = stmt.where(where)
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
        destinations: Sequence[str] = (),
        adopt: bool = False,
    ) -> IssuedKey:
        """Issue a key. With ``destinations`` the first version is delivered to
        every one of them before the key becomes active; if any delivery
        fails, the writes already made are undone, the key is removed again,
        and the error names the failing destination."""
        validate_key_name(name)
        validate_owner(owner)
        _reason(reason)
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidInputError("expiry must be in the future")
        plan = delivery.plan(self.stores, destinations, adopt=adopt) if destinations else None
        material = keyformat.generate(self._prefix)
        request = IssueRequest(name, owner, profile, policy, description, expires_at)
        try:
            with self._sessions.begin() as session:
                key, version = self._insert(session, request, material, active=plan is None)
                if plan is None:
                    self._audit_issued(session, key, request, material.display_prefix, actor, reason, ())
                else:
                    # Recorded before any store is written, so an issue killed
                    # half-way can be found and undone (delivery.abandon_stale_issues).
                    key.state_reason = delivery.issuing_reason(adopt=plan.adopt)
                    for position, uri in enumerate(plan.uris):
                        session.add(
                            models.Destination(key_id=key.id, uri=uri, kind=uri.split(":", 1)[0], position=position)
                        )
                    session.flush()
                session.refresh(key)
                view = KeyView.of(key)
        except IntegrityError:
            # Lost a race with another process issuing the same name.
            raise DuplicateNameError(f"a key named {name!r} already exists (names are unique)") from None
        if plan is None:
            return IssuedKey(key=view, plaintext=material.plaintext)
        try:
            plan.deliver(key_id=view.id, key_name=name, version_id=version, material=material.plaintext)
        except BaseException:
            with self._sessions.begin() as session:
                session.execute(delete(models.Key).where(models.Key.id == view.id))
            raise
        with self._sessions.begin() as session:
            row = find_key(session, view.id, for_update=True)
            row.state = KeyState.ACTIVE.value
            row.state_reason = ""
            self._audit_issued(session, row, request, material.display_prefix, actor, reason, plan.uris)
            session.flush()
            session.refresh(row)
            view = KeyView.of(row)
        return IssuedKey(key=view, plaintext=material.plaintext)

    def request_problems(
        self, requests: Sequence[IssueRequest], labels: Sequence[str]
    ) -> builtins.list[tuple[int, KeyOpsError]]:
        """Every problem of every request, checked before anything is written
        (``keys issue --from-file`` names all bad lines at once): ``(index, error)``."""
        with self._sessions() as session:
            profiles = set(session.execute(select(models.Profile.name)).scalars())
            policies = set(session.execute(select(models.RotationPolicy.name)).scalars())
            wanted = [r.name for r in requests]
            existing: set[str] = set()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                existing |= set(session.execute(select(models.Key.name).where(models.Key.name.in_(chunk))).scalars())
        problems: builtins.list[tuple[int, KeyOpsError]] = []
        seen: set[str] = set()
        for index, request in enumerate(requests):
            where = labels[index]
            try:
                validate_key_name(request.name)
                validate_owner(request.owner)
            except InvalidInputError as exc:
                problems.append((index, InvalidInputError(f"{where}: {exc.message}")))
                continue
            if request.name in seen:
                problems.append((index, DuplicateNameError(f"{where}: key {request.name!r} appears twice")))
            elif request.name in existing:
                problems.append((index, DuplicateNameError(f"{where}: a key named {request.name!r} already exists")))
            seen.add(request.name)
            if request.profile not in profiles:
                known = ", ".join(sorted(profiles))
                problems.append(
                    (index, NotFoundError(f"{where}: unknown profile {request.profile!r} (known: {known})"))
                )
            elif request.policy not in policies:
                known = ", ".join(sorted(policies))
                problems.append((index, NotFoundError(f"{where}: unknown policy {request.policy!r} (known: {known})")))
        return problems

    def issue_many(
        self,
        requests: Sequence[IssueRequest],
        *,
        actor: str,
        reason: str = "",
        labels: Sequence[str] | None = None,
    ) -> list[IssuedKey]:
        """Issue many keys in one transaction: all of them or none. An error
        names the entry it is about by its label (``line 3``; default
        ``entry N``, 0-based)."""
        _reason(reason)
        names = list(labels) if labels is not None else [f"entry {i}" for i in range(len(requests))]
        seen: set[str] = set()
        for index, request in enumerate(requests):
            try:
                validate_key_name(request.name)
                validate_owner(request.owner)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{names[index]}: {exc.message}") from None
            if request.name in seen:
                raise DuplicateNameError(f"{names[index]}: key {request.name!r} appears twice")
            seen.add(request.name)
        issued: list[IssuedKey] = []
        try:
            with self._sessions.begin() as session:
                for index, request in enumerate(requests):
                    material = keyformat.generate(self._prefix)
                    try:
                        key, _ = self._insert(session, request, material, active=True)
                    except (DuplicateNameError, NotFoundError, InvalidInputError) as exc:
                        raise type(exc)(f"{names[index]}: {exc.message}") from None
                    self._audit_issued(session, key, request, material.display_prefix, actor, reason, ())
                    session.refresh(key)
                    issued.append(IssuedKey(key=KeyView.of(key), plaintext=material.plaintext))
        except IntegrityError:
            raise DuplicateNameError("another process issued one of these names at the same time; retry") from None
        return issued

    def _insert(
        self, session: Session, request: IssueRequest, material: keyformat.NativeKey, *, active: bool
    ) -> tuple[models.Key, str]:
        name = request.name
        if session.execute(select(models.Key.id).where(models.Key.name == name)).first() is not None:
            raise DuplicateNameError(f"a key named {name!r} already exists (names are unique)")
        get_profile(session, request.profile)
        rotation_policy = get_policy(session, request.policy)
        now = utcnow()
        key = models.Key(
            name=name,
            owner=request.owner,
            profile=request.profile,
            policy=request.policy,
            issuer="native",
            # Until every destination holds the first version, verify must
            # not accept it: the key waits suspended.
            state=KeyState.ACTIVE.value if active else KeyState.SUSPENDED.value,
            state_reason="" if active else "issuing: delivering to destinations",
            description=request.description,
            created_at=now,
            updated_at=now,
            expires_at=request.expires_at,
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
        return key, version.id

    @staticmethod
    def _audit_issued(
        session: Session,
        key: models.Key,
        request: IssueRequest,
        display: str,
        actor: str,
        reason: str,
        destinations: Sequence[str],
    ) -> None:
        details: dict[str, object] = {
            "owner": request.owner,
            "profile": request.profile,
            "policy": request.policy,
            "version": 1,
            "display_prefix": display,
        }
        if destinations:
            details["destinations"] = list(destinations)
        audit.append(
            session, actor=actor, action="key.issued", key_id=key.id, key_name=key.name, reason=reason, details=details
        )

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
        after: str | None = None,
    ) -> list[KeyView]:
        """Keys by name; ``after``: only names after this one (the cursor of
        the next page). Every filter is checked against what exists, so a
        misspelt profile is refused, not answered with nothing."""
        stmt = select(models.Key).options(selectinload(models.Key.versions), selectinload(models.Key.destinations))
        stmt = stmt.where(*self._filters(owner, state, profile, after))
        stmt = stmt.order_by(models.Key.name).limit(limit).offset(offset)
        with self._sessions() as session:
            return [KeyView.of(row) for row in session.execute(stmt).scalars()]

    def count_after(
        self, after: str, *, owner: str | None = None, state: str | None = None, profile: str | None = None
    ) -> int:
        """How many keys matching the filters come after ``after`` (what a page left out)."""
        stmt = select(func.count()).select_from(models.Key).where(*self._filters(owner, state, profile, after))
        with self._sessions() as session:
            return int(session.execute(stmt).scalar_one())

    def _filters(
        self, owner: str | None, state: str | None, profile: str | None, after: str | None
    ) -> builtins.list[ColumnElement[bool]]:
        if state is not None and state not in {s.value for s in KeyState}:
            raise InvalidInputError(f"unknown state {state!r}: use one of {', '.join(s.value for s in KeyState)}")
        conditions: builtins.list[ColumnElement[bool]] = []
        if profile:
            with self._sessions() as session:
                known = list(session.execute(select(models.Profile.name).order_by(models.Profile.name)).scalars())
            if profile not in known:
                raise InvalidInputError(f"unknown profile {profile!r}: use one of {', '.join(known)}")
            conditions.append(models.Key.profile == profile)
        if owner:
            conditions.append(models.Key.owner == owner)
        if state:
            conditions.append(models.Key.state == state)
        if after:
            conditions.append(models.Key.name > after)
        return conditions

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
            key.state_reason = redact(reason)
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
        """Revoke the key and every version (verify refuses them at once),
        then delete the secret from each of its destinations: a revoked key
        left as a store's current value looks valid to whoever reads it and
        fails only at verify, with no hint why; an empty destination fails
        at the read. Only secrets keyops owns for this key are deleted. A
        store that cannot be reached leaves its secret (logged, audited as
        ``failed``); the revoke itself stands."""
        view = self._transition(name_or_id, "revoke", actor=actor, reason=reason)
        if view.destinations and self.stores is not None:
            self._clear_destinations(view, actor)
        return view

    def _clear_destinations(self, view: KeyView, actor: str) -> None:
        assert self.stores is not None
        deleted: builtins.list[str] = []
        failed: builtins.list[dict[str, str]] = []
        for uri in view.destinations:
            try:
                dest, store = self.stores.resolve(uri)
                store.delete(dest, view.id)
                deleted.append(uri)
            except KeyOpsError as exc:
                failed.append({"destination": uri, "error": exc.message})
                log.warning(
                    "the revoked key is still in a destination: delete it there by hand",
                    extra={"key": view.name, "destination": uri, "error": exc.message},
                )
        with self._sessions.begin() as session:
            audit.append(
                session,
                actor=actor,
                action="key.destinations_cleared",
                key_id=view.id,
                key_name=view.name,
                reason="revoked",
                details={"deleted": deleted, "failed": failed},
            )

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
