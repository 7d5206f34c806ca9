"""Key and version states, and the transitions between them.

Kept pure so the rules can be unit tested and shared by the CLI, the daemon
and the detection engine without any of them re-implementing them.
"""

from __future__ import annotations

from enum import StrEnum

from keyops.errors import InvalidStateError


class KeyState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"


class VersionState(StrEnum):
    PENDING = "pending"
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"
    REVOKED = "revoked"


#: (from, action) -> to. Revoked and expired are terminal.
_KEY_TRANSITIONS: dict[tuple[KeyState, str], KeyState] = {
    (KeyState.ACTIVE, "suspend"): KeyState.SUSPENDED,
    (KeyState.SUSPENDED, "resume"): KeyState.ACTIVE,
    (KeyState.ACTIVE, "revoke"): KeyState.REVOKED,
    (KeyState.SUSPENDED, "revoke"): KeyState.REVOKED,
    (KeyState.ACTIVE, "expire"): KeyState.EXPIRED,
    (KeyState.SUSPENDED, "expire"): KeyState.EXPIRED,
}

_VERSION_TRANSITIONS: dict[VersionState, frozenset[VersionState]] = {
    VersionState.PENDING: frozenset({VersionState.CURRENT, VersionState.RETIRED, VersionState.REVOKED}),
    VersionState.CURRENT: frozenset({VersionState.PREVIOUS, VersionState.RETIRED, VersionState.REVOKED}),
    VersionState.PREVIOUS: frozenset({VersionState.RETIRED, VersionState.REVOKED}),
    VersionState.RETIRED: frozenset({VersionState.REVOKED}),
    VersionState.REVOKED: frozenset(),
}


def key_transition(current: KeyState | str, action: str, key_name: str = "key") -> KeyState:
    state = KeyState(current)
    target = _KEY_TRANSITIONS.get((state, action))
    if target is None:
        raise InvalidStateError(f"cannot {action} {key_name}: it is {state.value}")
    return target


def version_can_move(current: VersionState | str, target: VersionState | str) -> bool:
    return VersionState(target) in _VERSION_TRANSITIONS[VersionState(current)]


def can_rotate(state: KeyState | str) -> bool:
    return KeyState(state) is KeyState.ACTIVE or KeyState(state) is KeyState.SUSPENDED
