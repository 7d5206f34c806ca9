"""Who may call which admin route: roles on tokens, checked before any work.

A route names the roles that may use it; ``admin`` is always among them.
Routes about one key also let an ``owner:<owner>`` token through when the
key belongs to that owner. A refusal is a 403 that names the roles the
route needs, and the request has changed nothing: the check comes first.
A key an owner token may not see is refused the same way whether it exists
or not (the answer does not tell a key's existence to a stranger).
"""

from __future__ import annotations

from dataclasses import dataclass

from keyops.api.cache_sync import Caller
from keyops.domain import scopes

READ = ("admin", "operator", "auditor")
ACT = ("admin", "operator")
AUDIT = ("admin", "auditor")
TOKENS_READ = ("admin", "auditor")
TOKENS_WRITE = ("admin",)


class Unauthenticated(Exception):
    """No bearer token, or one the server does not know (or revoked)."""


class Forbidden(Exception):
    """The token is known but holds none of the roles the route needs."""


@dataclass(frozen=True)
class Need:
    """What a route needs: one of ``roles``, or (``for_owner``) an
    ``owner:<owner>`` scope for the key the request is about."""

    what: str
    roles: tuple[str, ...]
    for_owner: bool = False

    def describe(self) -> str:
        options = " or ".join(self.roles)
        return f"{options} (or owner:<the key's owner>)" if self.for_owner else options


def has_role(caller: Caller, need: Need) -> bool:
    return any(role in caller.scopes for role in need.roles)


def owner_scopes(caller: Caller) -> frozenset[str]:
    return scopes.owners(caller.scopes)


def refuse(caller: Caller, need: Need) -> Forbidden:
    return Forbidden(f"token {caller.name!r} lacks the role for {need.what}: it needs {need.describe()}")


def check(caller: Caller, need: Need, *, key_owner: str | None = None) -> None:
    """Raise :class:`Forbidden` unless ``caller`` may do ``need`` (for a key of
    ``key_owner`` when the route is about one key)."""
    if has_role(caller, need):
        return
    if need.for_owner and key_owner is not None and key_owner in owner_scopes(caller):
        return
    raise refuse(caller, need)
