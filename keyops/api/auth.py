"""Caller credentials: ``Authorization: Bearer <token>`` checked against the
in-memory table of token hashes (reloaded on every token change).

401 when the header is missing or the token is unknown or revoked; 403 when
the token lacks the scope. The scopes and what each allows are in
``keyops.domain.scopes``.
"""

from __future__ import annotations

import hashlib

from keyops.api.cache_sync import Caller
from keyops.domain import scopes


def token_hash(token: str) -> str:
    """API tokens carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def caller_for(callers: dict[str, Caller], header: str | None) -> Caller | None:
    token = bearer(header)
    if token is None or len(token) > 256:
        return None
    return callers.get(token_hash(token))


def allows(caller: Caller, scope: str) -> bool:
    return scopes.allows(caller.scopes, scope)
