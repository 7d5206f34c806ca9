"""What an API token may do: its scopes, which are valid, and what each allows.

Service scopes name their endpoints: ``verify``, ``usage``, and
``alerts:<source>`` (deliver to ``POST /v1/alerts/<source>`` where that
source is set to ``require_token``). Only sources whose senders can put a
keyops bearer token in the request take one: SNS and GitHub sign with their
own keys and cannot carry ours, so ``alerts:sns`` and ``alerts:github`` would
be scopes nothing ever checks, and are refused like any other unknown scope.

Roles are for people and their tools on the admin API (``/v1/admin/``):
``admin`` allows everything (tokens included); ``operator`` reads and acts on
keys, rotations and findings but sees neither tokens nor the audit log;
``auditor`` reads everything, the audit log included, and changes nothing;
``owner:<owner>`` reads, rotates and sees the findings of that owner's keys
only. What each admin route needs is in ``keyops.api.admin.access``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from keyops.domain.names import OWNER_RE
from keyops.errors import InvalidInputError

#: Alert sources whose deliveries can carry a keyops token (``require_token``).
TOKEN_ALERT_SOURCES = ("standard", "alertmanager", "grafana")
ROLES = ("admin", "operator", "auditor")
PLAIN_SCOPES = ("verify", "usage", *ROLES)
ALERT_SCOPES = (*(f"alerts:{source}" for source in TOKEN_ALERT_SOURCES), "alerts:*")
SCOPES = (*PLAIN_SCOPES, *ALERT_SCOPES)
OWNER_PREFIX = "owner:"

_HINT = (
    "use verify, usage, admin, operator, auditor, owner:<owner>, or alerts:<source> for "
    + ", ".join(TOKEN_ALERT_SOURCES)
    + " (alerts:* for all of them)"
)


def alert_scope(source: str) -> str:
    return f"alerts:{source}"


def parse_scopes(text: str | Iterable[str]) -> list[str]:
    """The sorted, distinct scopes of a comma-separated list (or a list);
    :class:`InvalidInputError` names the first one keyops would never check."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = sorted({s.strip() for s in items if isinstance(s, str) and s.strip()})
    if not scopes:
        raise InvalidInputError(f"--scopes is empty: {_HINT}, comma-separated")
    for scope in scopes:
        if scope in SCOPES:
            continue
        if scope.startswith(OWNER_PREFIX):
            if OWNER_RE.fullmatch(scope.removeprefix(OWNER_PREFIX)):
                continue
            raise InvalidInputError(
                f"invalid scope {scope[:80]!r}: owner:<owner> takes an owner as keys have it "
                f"(letters, digits, '.', '_', '@' or '-', at most 64 characters)"
            )
        if scope.startswith("alerts:"):
            source = scope.removeprefix("alerts:")
            why = (
                f"{source} deliveries cannot carry a keyops token"
                if source in ("sns", "github")
                else "no such alert source"
            )
            raise InvalidInputError(f"unknown scope {scope[:64]!r} ({why}): alert scopes are {', '.join(ALERT_SCOPES)}")
        raise InvalidInputError(f"unknown scope {scope[:64]!r}: {_HINT}")
    return scopes


def allows(scopes: Collection[str], scope: str) -> bool:
    """True when a token holding ``scopes`` may use ``scope``."""
    if scope in scopes or "admin" in scopes:
        return True
    return scope.startswith("alerts:") and "alerts:*" in scopes


def owners(scopes: Collection[str]) -> frozenset[str]:
    """The owners named by a token's ``owner:<owner>`` scopes."""
    return frozenset(s.removeprefix(OWNER_PREFIX) for s in scopes if s.startswith(OWNER_PREFIX))
