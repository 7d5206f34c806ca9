"""Delivering a new key's first version to its destinations (``keys issue --dest``).

All or nothing: every destination is checked before anything is written (a
bad URI, a store that is not configured, or foreign data without ``--adopt``
stops the issue with nothing changed); then each gets the version as current;
if one fails, the ones already written are undone and the error names the
failing destination and why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.errors import ConfigError, InvalidInputError, KeyOpsError, StoreConflictError, StoreError
from keyops.inventory import models
from keyops.stores.base import Destination, SecretContext, SecretStore
from keyops.stores.registry import StoreRegistry

log = logging.getLogger("keyops.delivery")
MAX_DESTINATIONS = 16
ISSUING = "issuing: delivering to destinations"


def issuing_reason(*, adopt: bool) -> str:
    """The ``state_reason`` of a key whose first delivery is under way."""
    return f"{ISSUING} (adopting)" if adopt else ISSUING


@dataclass
class DeliveryPlan:
    targets: list[tuple[Destination, SecretStore, bool]]  # (destination, store, existed before)
    adopt: bool

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(d.uri for d, _, _ in self.targets)

    def deliver(self, *, key_id: str, key_name: str, version_id: str, material: str) -> None:
        ctx = SecretContext(key_id=key_id, key_name=key_name, version_number=1)
        written: list[tuple[Destination, SecretStore, bool]] = []
        for dest, store, existed in self.targets:
            try:
                store.put_initial(dest, version_id, material, ctx, adopt=self.adopt)
            except KeyOpsError as exc:
                undo_problems = self._undo([*written, (dest, store, existed)], key_id, version_id)
                suffix = f"; could not undo {', '.join(undo_problems)}" if undo_problems else ""
                raise type(exc)(f"delivery to {dest.uri} failed: {exc.message}{suffix}") from None
            written.append((dest, store, existed))

    @staticmethod
    def _undo(written: list[tuple[Destination, SecretStore, bool]], key_id: str, version_id: str) -> list[str]:
        problems = []
        for dest, store, existed in reversed(written):
            try:
                if existed:
                    # Adopted data stays (it was there before); only our version leaves.
                    description = store.describe(dest)
                    if description.current == version_id and description.previous:
                        store.promote(dest, description.previous, SecretContext(key_id=key_id, key_name=""))
                    store.retire(dest, version_id)
                else:
                    store.delete(dest, key_id)
            except (StoreError, StoreConflictError) as exc:
                log.error("could not undo a partial delivery", extra={"destination": dest.uri, "error": exc.message})
                problems.append(dest.uri)
        return problems


def plan(stores: StoreRegistry | None, uris: Sequence[str], *, adopt: bool) -> DeliveryPlan:
    """Validate every destination and look at what each holds; raise before
    anything is written."""
    if stores is None:
        raise ConfigError("destinations need the secret stores: build the application with keyops.bootstrap")
    if len(uris) > MAX_DESTINATIONS:
        raise InvalidInputError(f"at most {MAX_DESTINATIONS} destinations per key, got {len(uris)}")
    targets: list[tuple[Destination, SecretStore, bool]] = []
    seen: set[str] = set()
    resolved = []
    for uri in uris:
        dest, store = stores.resolve(uri)
        if dest.uri in seen:
            raise InvalidInputError(f"destination {dest.uri} is given twice")
        seen.add(dest.uri)
        resolved.append((dest, store))
    for dest, store in resolved:
        try:
            described = store.describe(dest)
        except KeyOpsError as exc:
            raise type(exc)(f"destination {dest.uri}: {exc.message}") from None
        if described.exists and not adopt:
            raise StoreConflictError(
                f"destination {dest.uri} already holds data keyops does not own; "
                f"choose another destination or pass --adopt to take it over"
            )
        targets.append((dest, store, described.exists))
    return DeliveryPlan(targets=targets, adopt=adopt)


def abandon_stale_issues(
    sessions: sessionmaker[Session], stores: StoreRegistry, older_than: datetime, *, actor: str
) -> list[str]:
    """Undo issues whose process died while delivering (the key is still
    suspended as "issuing" after ``older_than``): remove what keyops wrote in
    each destination, then the key. Destinations being adopted keep their
    data (it was there before). Returns the names of the keys removed."""
    removed: list[str] = []
    with sessions() as session:
        stale = (
            session.execute(
                select(models.Key.id)
                .where(models.Key.state == "suspended", models.Key.state_reason.startswith(ISSUING))
                .where(models.Key.created_at <= older_than)
            )
            .scalars()
            .all()
        )
    for key_id in stale:
        try:
            name = _abandon_one(sessions, stores, key_id, actor)
        except _Retry:
            continue
        if name is not None:
            removed.append(name)
    return removed


class _Retry(Exception):
    """Internal: leave this abandoned issue for the next run."""


def _abandon_one(sessions: sessionmaker[Session], stores: StoreRegistry, key_id: str, actor: str) -> str | None:
    with sessions.begin() as session:
        key = session.execute(
            select(models.Key).where(models.Key.id == key_id).with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if key is None or not key.state_reason.startswith(ISSUING):
            return None
        adopting = key.state_reason != ISSUING
        for row in key.destinations:
            if adopting:
                continue
            try:
                dest, store = stores.resolve(row.uri)
                store.delete(dest, key.id)
            except KeyOpsError as exc:
                log.warning("cannot undo an abandoned issue yet", extra={"key": key.name, "error": exc.message})
                raise _Retry from None
        audit.append(
            session,
            actor=actor,
            action="key.issue_abandoned",
            key_id=key.id,
            key_name=key.name,
            reason="the issuing process died before every destination held the key",
            details={"destinations": [d.uri for d in key.destinations]},
        )
        name = key.name
        session.delete(key)
        return name
