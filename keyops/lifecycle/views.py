"""Plain, serialisable views of inventory rows for the CLI and the API.

Their ``to_document()`` shapes are the stable JSON documented in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyops.inventory import models


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class VersionView:
    id: str
    number: int
    state: str
    display_prefix: str
    created_at: datetime
    activated_at: datetime | None
    grace_ends_at: datetime | None
    retired_at: datetime | None
    revoked_at: datetime | None
    external_id: str | None = None
    # Last verified use of this version (verify, usage events by hash).
    last_used_at: datetime | None = None

    @classmethod
    def of(cls, row: models.KeyVersion) -> VersionView:
        return cls(
            id=row.id,
            number=row.number,
            state=row.state,
            display_prefix=row.display_prefix,
            created_at=row.created_at,
            activated_at=row.activated_at,
            grace_ends_at=row.grace_ends_at,
            retired_at=row.retired_at,
            revoked_at=row.revoked_at,
            external_id=row.external_id,
            last_used_at=row.last_used_at,
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "state": self.state,
            "display_prefix": self.display_prefix,
            "created_at": iso(self.created_at),
            "activated_at": iso(self.activated_at),
            "grace_ends_at": iso(self.grace_ends_at),
            "retired_at": iso(self.retired_at),
            "revoked_at": iso(self.revoked_at),
            "external_id": self.external_id,
            "last_used_at": iso(self.last_used_at),
        }


@dataclass(frozen=True)
class KeyView:
    id: str
    name: str
    owner: str
    profile: str
    policy: str
    issuer: str
    state: str
    state_reason: str
    description: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    last_rotated_at: datetime | None
    next_rotation_at: datetime | None
    last_used_at: datetime | None
    versions: tuple[VersionView, ...] = ()
    destinations: tuple[str, ...] = ()
    labels: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: models.Key, *, with_versions: bool = True) -> KeyView:
        return cls(
            id=row.id,
            name=row.name,
            owner=row.owner,
            profile=row.profile,
            policy=row.policy,
            issuer=row.issuer,
            state=row.state,
            state_reason=row.state_reason,
            description=row.description,
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
            last_rotated_at=row.last_rotated_at,
            next_rotation_at=row.next_rotation_at,
            last_used_at=row.last_used_at,
            versions=tuple(VersionView.of(v) for v in row.versions) if with_versions else (),
            destinations=tuple(d.uri for d in row.destinations) if with_versions else (),
            labels=dict(row.labels or {}),
        )

    @property
    def current_version(self) -> VersionView | None:
        return next((v for v in self.versions if v.state == "current"), None)

    def to_document(self, *, with_versions: bool = True) -> dict[str, Any]:
        current = self.current_version
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "profile": self.profile,
            "policy": self.policy,
            "issuer": self.issuer,
            "state": self.state,
            "state_reason": self.state_reason,
            "description": self.description,
            "display_prefix": current.display_prefix if current else None,
            "current_version": current.number if current else None,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expires_at": iso(self.expires_at),
            "last_rotated_at": iso(self.last_rotated_at),
            "next_rotation_at": iso(self.next_rotation_at),
            "last_used_at": iso(self.last_used_at),
            "labels": self.labels,
        }
        if with_versions:
            doc["versions"] = [v.to_document() for v in self.versions]
            doc["destinations"] = list(self.destinations)
        return doc


def issued_document(view: KeyView, plaintext: str | None) -> dict[str, Any]:
    """What issuing a key answers (``keys issue --json``, ``POST /v1/admin/keys``):
    the plaintext ``key`` once, or null when it is only in the destinations."""
    current = view.current_version
    return {
        "id": view.id,
        "name": view.name,
        "owner": view.owner,
        "profile": view.profile,
        "policy": view.policy,
        "state": view.state,
        "key": plaintext,
        "display_prefix": current.display_prefix if current else None,
        "version": current.number if current else None,
        "destinations": list(view.destinations),
        "created_at": iso(view.created_at),
    }


def delivery_document(row: Any) -> dict[str, Any]:
    """One outbox delivery (``events list --json``, ``GET /v1/admin/events``)."""
    return {
        "delivery_id": row.id,
        "event_id": row.event_id,
        "seq": row.event_seq,
        "type": row.type,
        "key_id": row.key_id,
        "key_name": row.key_name,
        "sink": row.sink,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
        "delivered_at": iso(row.delivered_at),
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
    }
