"""What a rotation's steps share: the lease-checked transaction on the
rotation row, the step log, the audit record and the snapshot each step
reads (split from ``rotation_steps``, which drives the steps themselves).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, Text, bindparam, func, literal, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.issuers import IssuerContext
from keyops.stores.base import SecretContext


def audit_step(
    session: Session,
    rotation: models.Rotation,
    key: models.Key,
    action: str,
    details: dict[str, Any],
    reason: str | None = None,
) -> None:
    """Audit one step of a rotation, on behalf of whoever started it."""
    audit.append(
        session,
        actor=rotation.actor or "keyops",
        action=action,
        key_id=key.id,
        key_name=key.name,
        reason=rotation.reason if reason is None else reason,
        details=details,
    )


class LeaseLost(Exception):
    """Another worker took this rotation over (our lease expired): stop."""


@dataclass(frozen=True)
class Snapshot:
    """What a step needs to know, read in one short transaction."""

    rotation_id: str
    step: str
    status: str
    key_id: str
    key_name: str
    key_state: str
    destinations: tuple[str, ...]
    new_version_id: str | None
    new_version_number: int | None
    new_secret_hash: str | None
    grace_seconds: int
    done: frozenset[str]
    # The key's issuer (native, aws-iam) and what it needs (issue 6).
    issuer: str = "native"
    issuer_config: dict[str, Any] | None = None
    known_ids: frozenset[str] = frozenset()
    new_external_id: str | None = None
    minting_since: datetime | None = None
    evict: bool = False

    def issuer_ctx(self, minting_since: datetime | None = None) -> IssuerContext:
        return IssuerContext(
            key_id=self.key_id,
            key_name=self.key_name,
            config=dict(self.issuer_config or {}),
            known_ids=self.known_ids,
            minting_since=minting_since,
            evict=self.evict,
        )

    def ctx(self) -> SecretContext:
        return SecretContext(
            key_id=self.key_id,
            key_name=self.key_name,
            version_number=self.new_version_number or 0,
            rotation_id=self.rotation_id,
        )


@contextlib.contextmanager
def owned(
    sessions: sessionmaker[Session], rotation_id: str, worker_id: str, lease: timedelta
) -> Iterator[tuple[Session, models.Rotation]]:
    """A transaction on the rotation row that proves ``worker_id`` still owns
    it (else ``LeaseLost``) and extends its lease by ``lease``."""
    with sessions.begin() as session:
        rotation = session.execute(
            select(models.Rotation).where(models.Rotation.id == rotation_id).with_for_update()
        ).scalar_one()
        if rotation.lease_owner != worker_id or rotation.status != "running":
            raise LeaseLost(rotation_id)
        rotation.lease_expires_at = utcnow() + lease
        yield session, rotation


def advance(
    sessions: sessionmaker[Session],
    rotation_id: str,
    worker_id: str,
    lease: timedelta,
    entries: Sequence[dict[str, Any]],
    step: str | None = None,
) -> None:
    """What ``owned`` + ``record`` do for a step that only logs progress
    (and perhaps moves ``step``), as one guarded ``UPDATE``: it matches only
    while ``worker_id`` holds the lease of a running rotation (else
    ``LeaseLost``), extends the lease and appends ``entries`` (from
    ``step_entry``) to the step log in SQL. Half the statements of the
    read-then-write transaction, for the steps a rotation takes once per
    destination."""
    table = cast(Table, models.Rotation.__table__)
    now = utcnow()
    with sessions.begin() as session:
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            added = sql_cast(bindparam("added", json.dumps(list(entries)), type_=Text), JSONB)
            steps: Any = func.coalesce(table.c.steps, sql_cast(literal("[]"), JSONB)).op("||")(added)
        else:
            # json_insert applies its (path, value) pairs left to right: each '$[#]' appends.
            pairs: list[Any] = []
            for i, entry in enumerate(entries):
                pairs += ["$[#]", func.json(bindparam(f"added{i}", json.dumps(entry), type_=Text))]
            steps = func.json_insert(func.coalesce(table.c.steps, "[]"), *pairs)
        values: dict[str, Any] = {"steps": steps, "lease_expires_at": now + lease, "updated_at": now}
        if step is not None:
            values["step"] = step
        moved = conn.execute(
            update(table)
            .where(table.c.id == rotation_id, table.c.lease_owner == worker_id, table.c.status == "running")
            .values(**values)
        )
        if moved.rowcount != 1:
            raise LeaseLost(rotation_id)


def step_entry(step: str, destination: str | None = None, **extra: Any) -> dict[str, Any]:
    """One entry of a rotation's step log (``rotations show``), stamped now."""
    entry: dict[str, Any] = {"step": step, "at": utcnow().isoformat(timespec="milliseconds")}
    if destination is not None:
        entry["destination"] = destination
    entry.update(extra)
    return entry


def record(rotation: models.Rotation, step: str, destination: str | None = None, **extra: Any) -> None:
    """Append one entry to the rotation's step log (``rotations show``)."""
    rotation.steps = [*(rotation.steps or []), step_entry(step, destination, **extra)]


def read_snapshot(session: Session, rotation_id: str) -> Snapshot:
    rotation = session.get(models.Rotation, rotation_id)
    assert rotation is not None
    key = session.get(models.Key, rotation.key_id)
    assert key is not None
    version = session.get(models.KeyVersion, rotation.new_version_id) if rotation.new_version_id else None
    done = frozenset(f"{e['step']}:{e['destination']}" for e in (rotation.steps or []) if e.get("destination"))
    minting = [e["at"] for e in (rotation.steps or []) if e.get("step") == "minting"]
    return Snapshot(
        rotation_id=rotation.id,
        step=rotation.step,
        status=rotation.status,
        key_id=key.id,
        key_name=key.name,
        key_state=key.state,
        destinations=tuple(d.uri for d in key.destinations),
        new_version_id=version.id if version else None,
        new_version_number=version.number if version else None,
        new_secret_hash=version.secret_hash if version else None,
        grace_seconds=rotation.grace_seconds,
        done=done,
        issuer=key.issuer,
        issuer_config=dict(key.issuer_config or {}),
        known_ids=frozenset(v.external_id for v in key.versions if v.external_id),
        new_external_id=version.external_id if version else None,
        minting_since=datetime.fromisoformat(minting[0]) if minting else None,
        evict=any(e.get("evict") for e in (rotation.steps or [])),
    )
