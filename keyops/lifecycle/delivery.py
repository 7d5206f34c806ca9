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

from keyops.errors import ConfigError, InvalidInputError, KeyOpsError, StoreConflictError, StoreError
from keyops.stores.base import Destination, SecretContext, SecretStore
from keyops.stores.registry import StoreRegistry

log = logging.getLogger("keyops.delivery")
MAX_DESTINATIONS = 16


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
