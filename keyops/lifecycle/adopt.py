"""Adopting a credential keyops did not mint (``keyops keys adopt``).

An IAM user's existing access key becomes version 1 of a managed key: the
inventory records its access key id (``KeyVersion.external_id``, not secret)
and no hash (keyops never saw the secret), so the key's first rotation mints
a new access key, delivers it, and retires this one like any previous
version: deactivated when the grace ends, deleted after the hold.

Nothing is written anywhere until every check passed: the name is free, the
profile and policy exist, each destination is valid and holds nothing keyops
does not own (the first rotation writes the new credentials there), the IAM
user exists and the access key to adopt is unambiguous. Errors name the
refused AWS action or the bad option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.domain.names import validate_key_name, validate_owner
from keyops.domain.schedule import next_rotation_at
from keyops.domain.states import KeyState, VersionState
from keyops.errors import ConflictError, DuplicateNameError, InvalidInputError, KeyOpsError, StoreConflictError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.issuers import IssuerRegistry
from keyops.lifecycle.delivery import MAX_DESTINATIONS
from keyops.lifecycle.specs import get_policy, get_profile
from keyops.lifecycle.views import KeyView
from keyops.stores.registry import StoreRegistry

ADOPTABLE = ("aws-iam",)


class AdoptService:
    """``app.adopt`` (built on first use by ``service(app)``)."""

    def __init__(self, sessions: sessionmaker[Session], issuers: IssuerRegistry, stores: StoreRegistry) -> None:
        self._sessions = sessions
        self._issuers = issuers
        self._stores = stores

    def _check_destinations(self, uris: Sequence[str]) -> tuple[str, ...]:
        if len(uris) > MAX_DESTINATIONS:
            raise InvalidInputError(f"at most {MAX_DESTINATIONS} destinations per key, got {len(uris)}")
        seen: list[str] = []
        for uri in uris:
            dest, store = self._stores.resolve(uri)
            if dest.uri in seen:
                raise InvalidInputError(f"destination {dest.uri} is given twice")
            try:
                described = store.describe(dest)
            except KeyOpsError as exc:
                raise type(exc)(f"destination {dest.uri}: {exc.message}") from None
            if described.exists:
                raise StoreConflictError(
                    f"destination {dest.uri} already holds data keyops does not own; give an empty destination "
                    f"(the first rotation writes the new credentials there)"
                )
            seen.append(dest.uri)
        return tuple(seen)

    def _choose(self, user: str, keys: list[dict[str, Any]], access_key_id: str | None) -> str:
        ids = [k["id"] for k in keys]
        if access_key_id is not None:
            if access_key_id not in ids:
                raise InvalidInputError(
                    f"IAM user {user!r} has no access key {access_key_id} (it has: {', '.join(ids) or 'none'})"
                )
            return access_key_id
        active = [k["id"] for k in keys if k["status"] == "Active"]
        if len(active) == 1:
            return str(active[0])
        if not active:
            raise InvalidInputError(
                f"IAM user {user!r} has no active access key to adopt; create one first, or give --access-key-id"
            )
        raise InvalidInputError(
            f"IAM user {user!r} has two active access keys ({', '.join(active)}): choose one with --access-key-id"
        )

    def adopt(
        self,
        name: str,
        *,
        issuer: str,
        owner: str,
        profile: str,
        policy: str,
        actor: str,
        iam_user: str,
        destinations: Sequence[str] = (),
        access_key_id: str | None = None,
        reason: str = "",
        description: str = "",
    ) -> KeyView:
        validate_key_name(name)
        validate_owner(owner)
        if len(reason) > 1000:
            raise InvalidInputError("reason is too long (at most 1000 characters)")
        if issuer not in ADOPTABLE:
            raise InvalidInputError(
                f"cannot adopt with issuer {issuer!r}: use --issuer aws-iam (native keys: keyops keys issue --adopt)"
            )
        minting = self._issuers.get(issuer)
        config = minting.validate_config({"iam_user": iam_user})
        with self._sessions() as session:
            if session.execute(select(models.Key.id).where(models.Key.name == name)).first() is not None:
                raise DuplicateNameError(f"a key named {name!r} already exists (names are unique)")
            get_profile(session, profile)
            get_policy(session, policy)
        uris = self._check_destinations(destinations)
        keys = minting.list_keys(config["iam_user"])  # type: ignore[attr-defined]
        chosen = self._choose(config["iam_user"], keys, access_key_id)
        try:
            with self._sessions.begin() as session:
                return self._insert(
                    session, name, issuer, config, owner, profile, policy, uris, chosen, actor, reason, description
                )
        except IntegrityError:
            raise DuplicateNameError(f"a key named {name!r} already exists (names are unique)") from None

    def _insert(
        self,
        session: Session,
        name: str,
        issuer: str,
        config: dict[str, Any],
        owner: str,
        profile: str,
        policy: str,
        uris: tuple[str, ...],
        access_key_id: str,
        actor: str,
        reason: str,
        description: str,
    ) -> KeyView:
        taken = session.execute(
            select(models.Key.name)
            .join(models.KeyVersion, models.KeyVersion.key_id == models.Key.id)
            .where(models.KeyVersion.external_id == access_key_id)
        ).first()
        if taken is not None:
            raise ConflictError(f"access key {access_key_id} is already managed as {taken[0]!r}")
        rotation_policy = get_policy(session, policy)
        now = utcnow()
        key = models.Key(
            name=name,
            owner=owner,
            profile=profile,
            policy=policy,
            issuer=issuer,
            issuer_config=config,
            state=KeyState.ACTIVE.value,
            description=description,
            created_at=now,
            updated_at=now,
        )
        session.add(key)
        session.flush()
        key.next_rotation_at = next_rotation_at(rotation_policy, from_time=now, key_id=key.id, rotation_count=0)
        session.add(
            models.KeyVersion(
                key_id=key.id,
                number=1,
                state=VersionState.CURRENT.value,
                secret_hash=None,
                display_prefix=access_key_id,
                external_id=access_key_id,
                created_at=now,
                activated_at=now,
            )
        )
        for position, uri in enumerate(uris):
            session.add(models.Destination(key_id=key.id, uri=uri, kind=uri.split(":", 1)[0], position=position))
        audit.append(
            session,
            actor=actor,
            action="key.adopted",
            key_id=key.id,
            key_name=name,
            reason=reason,
            details={
                "issuer": issuer,
                "iam_user": config.get("iam_user"),
                "access_key_id": access_key_id,
                "owner": owner,
                "profile": profile,
                "policy": policy,
                "destinations": list(uris),
            },
        )
        session.flush()
        session.refresh(key)
        return KeyView.of(key)
