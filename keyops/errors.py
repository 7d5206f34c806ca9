"""The keyops error family.

Every error a user can see is a ``KeyOpsError``: one line that says what went
wrong and what to do, and an exit code the CLI returns. Vendor errors
(SQLAlchemy, botocore, hvac) are translated into these at the edge that talks
to the vendor, so nothing above that edge needs to know the vendor exists.

Exit codes (documented in the README, stable):

====  ===========================================================
0     success
1     unexpected internal error (a bug: please report it)
2     command-line usage error (unknown option, missing argument)
3     configuration error (a setting is missing or invalid)
4     not found (unknown key, profile, policy, rotation, token)
5     conflict (duplicate name, transition not allowed in this state)
6     invalid input (malformed name, bad file, bad value)
7     database unreachable or not migrated
8     secret store or issuer failure (destination unreachable, refused)
9     audit chain verification failed
10    audit chain does not hold the expected (anchored) head
====  ===========================================================
"""

from __future__ import annotations


class KeyOpsError(Exception):
    """Base class: a failure keyops understands and can explain in one line."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message would break log parsers and
        # the CLI's promise of a single clear error line.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(KeyOpsError):
    exit_code = 3


class NotFoundError(KeyOpsError):
    exit_code = 4


class ConflictError(KeyOpsError):
    exit_code = 5


class DuplicateNameError(ConflictError):
    pass


class InvalidStateError(ConflictError):
    pass


class InvalidInputError(KeyOpsError):
    exit_code = 6


class DatabaseUnavailableError(KeyOpsError):
    exit_code = 7


class StoreError(KeyOpsError):
    """A secret store or issuer failed. ``retryable`` tells the rotation
    engine whether trying again later can help (an outage) or not (refused)."""

    exit_code = 8
    retryable: bool = False


class StoreUnavailableError(StoreError):
    retryable = True


class StoreAuthError(StoreError):
    """Credentials missing, wrong or without permission for the operation."""


class StoreConflictError(StoreError):
    """The destination changed underneath us (check-and-set failure) or holds
    data keyops does not own."""


class StoreNotFoundError(StoreError):
    """The secret or version asked for does not exist in the store."""


class AuditChainError(KeyOpsError):
    exit_code = 9


class AuditHeadMismatchError(AuditChainError):
    """The chain verifies but no longer holds a head exported earlier: events
    at its end were deleted, or it was rewritten since."""

    exit_code = 10


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error",
    2: "command-line usage error",
    3: "configuration error",
    4: "not found",
    5: "conflict",
    6: "invalid input",
    7: "database unreachable or not migrated",
    8: "secret store or issuer failure",
    9: "audit chain verification failed",
    10: "audit chain does not hold the expected head",
}
