"""Credentials of HTTP API callers: ``keyops tokens create/list/revoke``.

A token is ``kopt_`` + 43 url-safe characters (256 random bits), shown once;
the inventory keeps its SHA-256 and a display prefix. Creating and revoking
are audited. Running servers pick up changes within a second (the change
hook in ``inventory.changes`` publishes API-token changes).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.domain.scopes import parse_scopes
from keyops.errors import DuplicateNameError, InvalidInputError, InvalidStateError, NotFoundError
from keyops.inventory import models
from keyops.inventory.types import utcnow

TOKEN_PREFIX = "kopt_"  # noqa: S105 (a label, not a secret)
NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenView:
    name: str
    scopes: tuple[str, ...]
    display_prefix: str
    created_at: datetime
    revoked_at: datetime | None

    def to_document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "display_prefix": self.display_prefix,
            "created_at": self.created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "revoked_at": None
            if self.revoked_at is None
            else self.revoked_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }

    @classmethod
    def of(cls, row: models.ApiToken) -> TokenView:
        return cls(row.name, tuple(str(s) for s in row.scopes), row.display_prefix, row.created_at, row.revoked_at)


def retired_name(name: str, token_id: str) -> str:
    """The name a revoked token keeps once its name is reused: ``~`` is not
    allowed in token names, so it can never collide with a new one."""
    return f"{name[:43]}~revoked-{token_id[-12:]}"


class TokenService:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, name: str, scopes: str | list[str], *, actor: str) -> tuple[TokenView, str]:
        """A new token; the plaintext is returned once and never stored."""
        if not NAME_RE.fullmatch(name):
            raise InvalidInputError(
                f"invalid token name {name!r}: lowercase letters, digits, '.', '_' or '-', at most 64 characters"
            )
        scope_list = parse_scopes(scopes)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self._sessions.begin() as session:
                same = session.execute(
                    select(models.ApiToken).where(models.ApiToken.name == name).with_for_update()
                ).scalar_one_or_none()
                replaced: str | None = None
                if same is not None and same.revoked_at is None:
                    raise DuplicateNameError(
                        f"a token named {name!r} already exists: revoke it first "
                        f"(keyops tokens revoke {name}) or pick another name"
                    )
                if same is not None:
                    # A revoked token frees its name (users reissue "gateway-eu"
                    # after revoking it). The old row stays, for the audit log
                    # and `tokens list`, under a name no valid name can take.
                    replaced = same.id
                    same.name = retired_name(name, same.id)
                    session.flush()
                row = models.ApiToken(
                    name=name,
                    token_hash=hash_token(token),
                    display_prefix=token[: len(TOKEN_PREFIX) + 4],
                    scopes=scope_list,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                audit.append(
                    session,
                    actor=actor,
                    action="token.created",
                    reason="",
                    details={"name": name, "scopes": scope_list} | ({"replaces_revoked": replaced} if replaced else {}),
                )
                view = TokenView.of(row)
        except IntegrityError:
            raise DuplicateNameError(f"a token named {name!r} already exists") from None
        return view, token

    def list(self) -> list[TokenView]:
        with self._sessions() as session:
            rows = session.execute(select(models.ApiToken).order_by(models.ApiToken.name)).scalars()
            return [TokenView.of(r) for r in rows]

    def revoke(self, name: str, *, actor: str, reason: str = "") -> TokenView:
        with self._sessions.begin() as session:
            row = session.execute(
                select(models.ApiToken).where(models.ApiToken.name == name).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"no token named {name!r} (see keyops tokens list)")
            if row.revoked_at is not None:
                raise InvalidStateError(f"token {name!r} is already revoked")
            row.revoked_at = utcnow()
            audit.append(session, actor=actor, action="token.revoked", reason=reason, details={"name": name})
            session.flush()
            return TokenView.of(row)
