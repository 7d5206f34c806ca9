"""The ``SecretStore`` interface: where keyops delivers key material.

The lifecycle is the one AWS Secrets Manager's rotation protocol uses, because
it is the strictest of the three backends and the others can emulate it:

1. ``put_pending(location, version)`` stores a new version *beside* the current
   one, where consumers do not read it (AWS: the ``AWSPENDING`` label; Vault:
   a sibling staging path; file: a ``pending`` entry). It is idempotent per
   keyops version id, so a retried or resumed step is a no-op.
2. ``read(location, stage)`` / ``read_version(location, version_id)`` read it
   back (the rotation engine tests the pending version, and on resume after a
   crash it recovers the pending plaintext from a store: the inventory never
   holds plaintext).
3. ``promote(location, version_id)`` makes the pending version current; the
   old current becomes previous (still readable by consumers that ask for it,
   valid during the grace period). Idempotent.
4. ``retire(location, version_id)`` removes a previous or pending version from
   the store for good (Vault: destroyed, not soft-deleted). Idempotent.

Every method raises only keyops errors (``keyops.errors``): vendor exceptions
(botocore ``ClientError``, hvac's exceptions, ``requests``/``urllib3``
connection errors, ``OSError``) are translated inside the store module.

* ``StoreUnavailableError`` (``retryable``): the store cannot be reached or
  answered 5xx/throttled after the store's own retries. Trying later may help.
* ``StoreAuthError``: credentials missing, wrong, expired or not permitted.
* ``StoreConflictError``: check-and-set lost, or the destination holds data
  keyops does not own (another key's or someone else's).
* ``StoreNotFoundError``: the asked-for secret does not exist (only where a
  method says so; reads return ``None`` instead).
* ``InvalidInputError``: a malformed destination location.

Messages never contain key material (invariant 1).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum

from keyops.errors import InvalidInputError


class Stage(StrEnum):
    """Where a version sits in a destination (AWS's staging labels)."""

    PENDING = "AWSPENDING"
    CURRENT = "AWSCURRENT"
    PREVIOUS = "AWSPREVIOUS"


SCHEMES = ("vault", "aws-sm", "file")

_VAULT_RE = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.@+=-]+)+")
_AWS_NAME_RE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_AWS_ARN_RE = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+")


@dataclass(frozen=True)
class Destination:
    """A parsed destination URI.

    ``vault:<mount>/<path>`` (``mount`` is the first segment),
    ``aws-sm:<secret name or ARN>``, ``file:<path>`` (relative paths are under
    ``stores.file.directory``).
    """

    uri: str
    scheme: str
    location: str

    @property
    def mount(self) -> str:
        """Vault: the KV v2 mount point (first path segment)."""
        return self.location.split("/", 1)[0]

    @property
    def path(self) -> str:
        """Vault: the secret path inside the mount."""
        return self.location.split("/", 1)[1] if "/" in self.location else ""

    def __str__(self) -> str:
        return self.uri


def parse_destination(uri: str) -> Destination:
    """Parse and validate a destination URI; ``InvalidInputError`` names the
    problem and the accepted forms."""
    forms = "use vault:<mount>/<path>, aws-sm:<secret name or ARN> or file:<path>"
    if not isinstance(uri, str) or ":" not in uri:
        raise InvalidInputError(f"destination {uri!r} has no scheme: {forms}")
    scheme, _, location = uri.partition(":")
    if scheme not in SCHEMES:
        raise InvalidInputError(f"destination {uri!r} has unknown scheme {scheme!r}: {forms}")
    if not location or location != location.strip() or any(ord(c) < 32 for c in location):
        raise InvalidInputError(f"destination {uri!r} has an empty or malformed path: {forms}")
    if scheme == "vault":
        location = location.strip("/") if location.startswith("/") else location
        if not _VAULT_RE.fullmatch(location) or "//" in location or any(p in (".", "..") for p in location.split("/")):
            raise InvalidInputError(
                f"destination {uri!r} is not a Vault KV path: use vault:<mount>/<path> "
                f"(letters, digits and ._-@+= in '/'-separated segments)"
            )
    elif scheme == "aws-sm":
        if location.startswith("arn:"):
            if not _AWS_ARN_RE.fullmatch(location):
                raise InvalidInputError(f"destination {uri!r} is not a Secrets Manager ARN")
        elif not _AWS_NAME_RE.fullmatch(location):
            raise InvalidInputError(
                f"destination {uri!r} is not a valid Secrets Manager name: "
                f"1-512 characters of letters, digits and /_+=.@-"
            )
    else:
        parts = location.split("/")
        if ".." in parts or location.endswith("/"):
            raise InvalidInputError(f"destination {uri!r}: file paths may not contain '..' or end with '/'")
    return Destination(uri=f"{scheme}:{location}", scheme=scheme, location=location)


@dataclass(frozen=True)
class StoredVersion:
    """One version of a secret as a store holds it. ``material`` is the
    plaintext: it is hidden from ``repr`` so it cannot reach a log by accident."""

    version_id: str
    material: str = field(repr=False)
    stages: frozenset[Stage] = frozenset()


@dataclass(frozen=True)
class SecretDescription:
    """What a destination holds, without any material.

    ``exists``: anything is stored there at all. ``owner_key_id``: the keyops
    key id recorded with the secret (tags / custom_metadata / file header);
    ``None`` with ``exists`` means foreign data keyops did not write.
    ``stages`` maps each stage to the keyops version id holding it.
    ``versions``: every keyops version id still readable there.
    """

    exists: bool
    owner_key_id: str | None = None
    stages: dict[Stage, str] = field(default_factory=dict)
    versions: tuple[str, ...] = ()

    def holds_foreign_data(self, key_id: str) -> bool:
        return self.exists and self.owner_key_id != key_id

    @property
    def current(self) -> str | None:
        return self.stages.get(Stage.CURRENT)

    @property
    def pending(self) -> str | None:
        return self.stages.get(Stage.PENDING)

    @property
    def previous(self) -> str | None:
        return self.stages.get(Stage.PREVIOUS)


@dataclass(frozen=True)
class SecretContext:
    """Non-secret labels written with the secret (tags, custom_metadata)."""

    key_id: str
    key_name: str
    version_number: int = 0
    rotation_id: str | None = None


class SecretStore(ABC):
    """One backend. Implementations are thread-safe: the rotation engine calls
    one store from several threads at once."""

    #: The URI scheme this store serves (``vault``, ``aws-sm``, ``file``).
    scheme: str = ""

    @abstractmethod
    def describe(self, dest: Destination) -> SecretDescription:
        """What the destination holds (no material). A missing secret is
        ``SecretDescription(exists=False)``, not an error.

        Raises ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def put_initial(
        self, dest: Destination, version_id: str, material: str, ctx: SecretContext, *, adopt: bool = False
    ) -> None:
        """Create the secret with its first version as current (``keys issue
        --dest``). Idempotent for the same ``version_id``. When the secret
        exists and keyops does not own it, raises ``StoreConflictError``
        unless ``adopt`` (then the new version becomes current on top of the
        foreign data, and the secret is labelled as keyops-owned).

        Raises ``StoreConflictError``, ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def put_pending(self, dest: Destination, version_id: str, material: str, ctx: SecretContext) -> None:
        """Store ``material`` as the pending version ``version_id`` without
        changing what consumers read. Idempotent: putting the same id again is
        a no-op. Creates the secret if it is missing (the pending version is
        then the only one, and is not yet current).

        Raises ``StoreConflictError`` (foreign data, CAS lost, same id with
        different material), ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def read(self, dest: Destination, stage: Stage = Stage.CURRENT) -> StoredVersion | None:
        """The version at ``stage``, or ``None`` if none (or no secret).

        Raises ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def read_version(self, dest: Destination, version_id: str) -> StoredVersion | None:
        """The version with this keyops id if the store still holds it
        readable, else ``None`` (retired/destroyed versions are ``None``).

        Raises ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def promote(self, dest: Destination, version_id: str, ctx: SecretContext) -> None:
        """Make pending ``version_id`` current; the old current becomes
        previous (and an older previous loses that stage). A no-op when it is
        already current.

        Raises ``StoreNotFoundError`` (no such pending version),
        ``StoreConflictError``, ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def retire(self, dest: Destination, version_id: str) -> None:
        """Remove a pending or previous version for good. A no-op when the
        store no longer holds it. Refuses to retire the current version
        (``StoreConflictError``).

        Raises ``StoreConflictError``, ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def delete(self, dest: Destination, key_id: str) -> None:
        """Delete the whole secret (rollback of a failed ``keys issue --dest``).
        Only when keyops owns it (``owner_key_id == key_id``); otherwise a
        no-op. Missing secret: no-op.

        Raises ``StoreUnavailableError``, ``StoreAuthError``."""

    @abstractmethod
    def health(self) -> None:
        """Raise ``StoreUnavailableError``/``StoreAuthError`` unless the store
        is reachable with the configured credentials."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and background threads (token renewal)."""
