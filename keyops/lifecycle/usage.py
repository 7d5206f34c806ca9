"""Reading the per-minute usage aggregates (written by ``POST /v1/usage``)
for people: ``keyops keys show`` prints ``usage_summary``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from keyops.inventory import models
from keyops.inventory.types import utcnow

WINDOWS = (("last_hour", timedelta(hours=1)), ("last_24h", timedelta(hours=24)), ("last_7d", timedelta(days=7)))


def usage_summary(sessions: sessionmaker[Session], key_id: str, now: datetime | None = None) -> dict[str, Any]:
    """``{"last_hour": {"requests", "errors", "input_tokens", "output_tokens"}, "last_24h": ..., "last_7d": ...}``."""
    now = now or utcnow()
    u = models.UsageMinute
    summary: dict[str, Any] = {}
    with sessions() as session:
        for label, span in WINDOWS:
            row = session.execute(
                select(
                    func.coalesce(func.sum(u.requests), 0),
                    func.coalesce(func.sum(u.errors), 0),
                    func.coalesce(func.sum(u.input_tokens), 0),
                    func.coalesce(func.sum(u.output_tokens), 0),
                ).where(u.key_id == key_id, u.minute >= now - span)
            ).one()
            summary[label] = {
                "requests": int(row[0]),
                "errors": int(row[1]),
                "input_tokens": int(row[2]),
                "output_tokens": int(row[3]),
            }
    return summary
