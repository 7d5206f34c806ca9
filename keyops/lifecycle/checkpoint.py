"""Detection checkpoints in the inventory: the engine survives a restart.

The daemon writes the engine's snapshot (``keyops.detect.snapshot``) to the
``detection_checkpoints`` row of its name every ``detection.checkpoint_every``
and when it stops, and restores it when it starts. What a crash (``kill -9``)
loses is what the engine learned since the last checkpoint, and the events
accepted since then; the learned baselines, open cases and the coordination
index come back. Findings and actions that the events after the checkpoint
had already produced are not repeated if those events come again: findings
are unique per ``dedup_key`` (``keyops.lifecycle.findings``).

A checkpoint that cannot be read (corrupt, or written by an incompatible
version) is not fatal: one warning line, and the engine starts empty, as it
did before checkpoints existed. Refusing to start would turn a bad row into
an outage of verify.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from keyops.detect.snapshot import FORMAT, SnapshotError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle.detection import DetectionService

log = logging.getLogger("keyops.detect")


@dataclass(frozen=True)
class Written:
    """One checkpoint written: how big, how many keys, how long it took."""

    position: str
    keys: int
    size: int
    seconds: float


class EngineCheckpoints:
    """Save and restore one detection engine under one name."""

    def __init__(self, sessions: sessionmaker[Session], detection: DetectionService, *, name: str = "local") -> None:
        self._sessions = sessions
        self._detection = detection
        self.name = name
        #: The engine revision last written (or restored): an idle engine is not written again.
        self._written: tuple[float, ...] | None = None

    def save(self, *, force: bool = False) -> Written | None:
        """Write the engine's state now (unless it has not changed since the
        last checkpoint, and not ``force``); ``None`` when nothing was
        written, or (logged) when the database refused it: the previous
        checkpoint stays, and the next run tries again."""
        started = time.monotonic()
        revision = self._detection.revision()
        if revision == self._written and not force:
            return None
        data, position, keys = self._detection.snapshot()
        values = {
            "format": FORMAT,
            "position": position[:200],
            "keys": keys,
            "size": len(data),
            "data": data,
            "written_at": utcnow(),
        }
        try:
            with self._sessions.begin() as session:
                done = session.execute(
                    update(models.DetectionCheckpoint)
                    .where(models.DetectionCheckpoint.name == self.name)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if not cast(CursorResult[Any], done).rowcount:
                    try:
                        with session.begin_nested():
                            session.add(models.DetectionCheckpoint(name=self.name, **values))
                    except IntegrityError:  # written by another process meanwhile
                        session.execute(
                            update(models.DetectionCheckpoint)
                            .where(models.DetectionCheckpoint.name == self.name)
                            .values(**values)
                            .execution_options(synchronize_session=False)
                        )
        except SQLAlchemyError as exc:
            log.warning(
                "detection checkpoint not written; the previous one stays",
                extra={"checkpoint": self.name, "error": type(exc).__name__},
            )
            return None
        self._written = revision
        return Written(position, keys, len(data), time.monotonic() - started)

    def restore(self) -> bool:
        """Load the engine's state from the checkpoint, if there is one it can
        read; otherwise start empty (one warning line says why)."""
        try:
            with self._sessions() as session:
                row = session.execute(
                    select(models.DetectionCheckpoint.data, models.DetectionCheckpoint.written_at).where(
                        models.DetectionCheckpoint.name == self.name
                    )
                ).one_or_none()
        except SQLAlchemyError as exc:
            log.warning(
                "detection checkpoint not read; detection starts with no learned state",
                extra={"checkpoint": self.name, "error": type(exc).__name__},
            )
            return False
        if row is None:
            log.info("no detection checkpoint yet; detection starts learning", extra={"checkpoint": self.name})
            return False
        data, written_at = row
        try:
            position = self._detection.restore(bytes(data))
        except Exception as exc:  # a bad row must never stop the daemon
            log.warning(
                "detection checkpoint unreadable; detection starts with no learned state "
                "(it is replaced at the next checkpoint)",
                extra={"checkpoint": self.name, "reason": str(exc) if isinstance(exc, SnapshotError) else repr(exc)},
            )
            return False
        engine = self._detection.engine
        self._written = self._detection.revision()
        log.info(
            "detection state restored",
            extra={
                "checkpoint": self.name,
                "position": position,
                "keys": len(engine.keys),
                "learned": sum(1 for st in engine.keys.values() if st.learned),
                "written_at": written_at.isoformat(),
            },
        )
        return True
