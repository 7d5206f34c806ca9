"""What callers get back from the rotation engine (plain, serialisable)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from keyops.inventory import models
from keyops.lifecycle.views import iso


@dataclass(frozen=True)
class RotationResult:
    """One rotation as it stands. ``plaintext`` is set only for a key with no
    destinations (someone must receive the new key: the CLI prints it once);
    it is hidden from ``repr``."""

    rotation_id: str
    key_id: str
    key_name: str
    status: str  # running | finished | failed | rolled_back
    step: str
    trigger: str
    actor: str
    reason: str
    grace_seconds: int
    old_version: int | None
    new_version: int | None
    attempts: int
    last_error: str
    created_at: datetime
    finished_at: datetime | None
    steps: tuple[dict[str, Any], ...] = ()
    #: A failed rotation's automatic retry (None: none left, or not failed).
    next_attempt_at: datetime | None = None
    plaintext: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    def with_plaintext(self, plaintext: str | None) -> RotationResult:
        return replace(self, plaintext=plaintext)

    def to_document(self, *, with_steps: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.rotation_id,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "status": self.status,
            "step": self.step,
            "trigger": self.trigger,
            "actor": self.actor,
            "reason": self.reason,
            "grace_seconds": self.grace_seconds,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
            "next_attempt_at": iso(self.next_attempt_at),
        }
        if with_steps:
            doc["steps"] = list(self.steps)
        return doc


def result_of(session: Session, rotation: models.Rotation) -> RotationResult:
    key = session.get(models.Key, rotation.key_id)
    old = session.get(models.KeyVersion, rotation.old_version_id) if rotation.old_version_id else None
    new = session.get(models.KeyVersion, rotation.new_version_id) if rotation.new_version_id else None
    return RotationResult(
        rotation_id=rotation.id,
        key_id=rotation.key_id,
        key_name=key.name if key else "",
        status=rotation.status,
        step=rotation.step,
        trigger=rotation.trigger,
        actor=rotation.actor,
        reason=rotation.reason,
        grace_seconds=rotation.grace_seconds,
        old_version=old.number if old else None,
        new_version=new.number if new else None,
        attempts=rotation.attempts,
        last_error=rotation.last_error,
        created_at=rotation.created_at,
        finished_at=rotation.finished_at,
        steps=tuple(rotation.steps or ()),
        next_attempt_at=rotation.next_attempt_at if rotation.status == "failed" else None,
    )
