"""The ``Issuer`` interface: who mints a key's material.

The rotation engine never generates or destroys material itself; it asks the
key's issuer (``Key.issuer``: ``native`` or ``aws-iam``) through this
interface, so every issuer gets the same persisted, resumable rotation, the
same grace periods, stores and audit log.

The life of one piece of material, as the engine drives it:

1. ``preflight(ctx)`` before a rotation starts: refuse now, with nothing
   changed, when minting cannot work (an IAM user that already has two
   access keys, a user that does not exist, missing permissions).
2. ``mint(ctx)`` creates it. The result's ``material`` is the exact string
   delivered to the destinations (native: the key; aws-iam: the JSON document
   ``{"AccessKeyId", "SecretAccessKey"}``); the inventory keeps only
   ``secret_hash`` and the non-secret ``display_prefix``/``external_id``.
   ``ctx.minting_since`` is set when an earlier attempt of this same rotation
   may have minted material that was never recorded (a crash between the
   vendor call and the commit): the issuer then removes such orphans first.
3. ``test(ctx, material)`` proves the new material works (aws-iam: an STS
   ``GetCallerIdentity`` signed with the new key must name the IAM user).
4. ``deactivate(ctx, external_id)`` when its grace ends, or while its key is
   suspended: it stops working but can be re-enabled (aws-iam: status
   ``Inactive``); ``reactivate`` undoes it when a suspended key is resumed.
5. ``delete(ctx, external_id)`` after the hold, or at once for material that
   was minted but never delivered (``discard``).

Every method is idempotent (a resumed step calls it again) and raises only
keyops errors; vendor errors are translated inside the implementation:

* ``IssuerUnavailableError`` (retryable; a ``StoreUnavailableError``, so the
  engine's backoff applies): the vendor could not be reached or throttled.
* ``IssuerAuthError`` (a ``StoreAuthError``): the vendor refused keyops'
  credentials or permissions; the message names the refused action
  (``iam:CreateAccessKey``).
* ``NotFoundError``: the issuer's principal (the IAM user) does not exist.
* ``ConflictError``: the vendor's limits forbid minting (two access keys).
* ``InvalidInputError``: bad ``issuer_config``.

Messages never contain material (invariant 1).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyops.errors import StoreAuthError, StoreUnavailableError


class IssuerUnavailableError(StoreUnavailableError):
    """The issuer's vendor cannot be reached, answered 5xx or throttled."""


class IssuerAuthError(StoreAuthError):
    """The vendor refused keyops' credentials or permissions for an action."""


@dataclass(frozen=True)
class IssuerContext:
    """What an issuer knows about the key it mints for (no material).

    ``known_ids``: the external ids of every version the inventory records
    for this key (anything else the vendor lists is not keyops'). ``evict``:
    the operator allowed deleting the oldest inactive credential to make room.
    """

    key_id: str
    key_name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    known_ids: frozenset[str] = frozenset()
    minting_since: datetime | None = None
    evict: bool = False


@dataclass(frozen=True)
class Minted:
    """New material. ``material`` is hidden from ``repr`` so it cannot reach a log."""

    material: str = field(repr=False)
    secret_hash: str
    display_prefix: str
    external_id: str | None = None


class Issuer(ABC):
    """One way of minting material. Implementations are thread-safe."""

    #: ``Key.issuer`` value this implementation serves.
    name: str = ""

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The normalised ``issuer_config`` for a new key, or
        ``InvalidInputError`` naming the bad field."""
        return dict(config)

    def preflight(self, ctx: IssuerContext) -> None:  # noqa: B027 - optional hook
        """Raise if a rotation could not mint now (see the module docstring)."""

    @abstractmethod
    def mint(self, ctx: IssuerContext) -> Minted:
        """Create new material (see the module docstring)."""

    @abstractmethod
    def hash(self, material: str) -> str:
        """The hash the inventory keeps for ``material`` (as stored in a destination)."""

    @abstractmethod
    def test(self, ctx: IssuerContext, material: str) -> None:
        """Raise unless ``material`` works. Waits (bounded) for vendors that
        are eventually consistent; then ``IssuerUnavailableError``."""

    @abstractmethod
    def deactivate(self, ctx: IssuerContext, external_id: str | None) -> None:
        """Make the material stop working (reversibly). Missing: no-op."""

    def reactivate(self, ctx: IssuerContext, external_id: str | None) -> None:  # noqa: B027 - optional hook
        """Undo ``deactivate`` (a suspended key is resumed). Missing: no-op."""

    @abstractmethod
    def delete(self, ctx: IssuerContext, external_id: str | None) -> None:
        """Destroy the material for good. Missing: no-op."""

    def discard(self, ctx: IssuerContext, external_id: str | None) -> None:
        """Destroy material that was minted but never delivered (its
        plaintext is lost: a crash before any destination got it)."""
        self.delete(ctx, external_id)

    @property
    def holds_material(self) -> bool:
        """Whether deactivate/delete act on something outside keyops (the
        retirer then keeps a hold before deleting)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""
