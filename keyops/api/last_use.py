"""Per-version last use: recorded by verify in memory, written in batches.

Usage-aware retirement (``retire_when_idle``) needs to know when each
*version* was last used, not just the key: traffic on a new version must not
keep the previous one alive. Verify answers from memory and must stay that
way, so it only records a genuine key's use with one dict store, keyed by the
SHA-256 it has already computed (the version's unique ``secret_hash``: no
extra cache column, no extra lookup on the hot path). A background task swaps
the dict out every ``server.last_use_flush`` and writes it with one batched
UPDATE, and once more at shutdown.

The UPDATE only moves ``key_versions.last_used_at`` forward, so replicas
flushing concurrently, or a late flush carrying older times, can never move
it back; rows are written in hash order, so two replicas' transactions take
row locks in the same order and cannot deadlock. It goes through a plain
connection, not the ORM session: a use is not a key change and must not
invalidate verify caches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Column, Connection, Table, bindparam, or_, update
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from keyops.inventory import models

log = logging.getLogger("keyops.api.last_use")


class LastUse:
    """Uses seen since the last flush: version digest (32 bytes) -> epoch seconds.

    Written by verify on the event loop (``seen[digest] = now``) and swapped
    out by ``take`` on the same loop, so no lock is needed."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[bytes, float] = {}

    def take(self) -> dict[bytes, float]:
        taken, self.seen = self.seen, {}
        return taken

    def put_back(self, taken: Mapping[bytes, float]) -> None:
        """Keep uses whose write failed, for the next flush (latest time wins)."""
        seen = self.seen
        for digest, ts in taken.items():
            if seen.get(digest, 0.0) < ts:
                seen[digest] = ts


def forward(conn: Connection, match: Column[str], uses: Mapping[str, datetime]) -> None:
    """Set ``last_used_at`` of the rows of ``match``'s table whose ``match``
    value is a key of ``uses`` to its time, only where that moves it
    forward. One executemany in sorted order (concurrent writers lock rows
    alike); the caller owns the transaction."""
    if not uses:
        return
    table = match.table
    ts = bindparam("ts", type_=table.c.last_used_at.type)
    stmt = (
        update(table)
        .where(match == bindparam("match"))
        .where(or_(table.c.last_used_at.is_(None), table.c.last_used_at < ts))
        .values(last_used_at=ts)
    )
    conn.execute(stmt, [{"match": value, "ts": uses[value]} for value in sorted(uses)])


def move_forward(conn: Connection, uses: Mapping[str, datetime]) -> None:
    """Per-version last use: ``uses`` maps secret hashes (hex) to times."""
    versions = cast(Table, models.KeyVersion.__table__)
    forward(conn, versions.c.secret_hash, uses)


def write(engine: Engine, taken: Mapping[bytes, float]) -> None:
    """One transaction for one flush."""
    uses = {digest.hex(): datetime.fromtimestamp(ts, UTC) for digest, ts in taken.items()}
    with engine.begin() as conn:
        move_forward(conn, uses)


class Flusher:
    """The daemon's background task: ``run`` flushes every ``interval``
    seconds until cancelled; ``flush`` is also called once at shutdown."""

    def __init__(self, recorder: LastUse, engine: Engine, interval: float) -> None:
        self._recorder = recorder
        self._engine = engine
        self._interval = interval

    async def flush(self) -> int:
        """Write what was seen since the last flush; the number of versions."""
        taken = self._recorder.take()
        if not taken:
            return 0
        try:
            await run_in_threadpool(write, self._engine, taken)
        except Exception:
            log.warning(
                "could not record versions' last use; will retry at the next flush",
                extra={"versions": len(taken)},
                exc_info=True,
            )
            self._recorder.put_back(taken)
            return 0
        return len(taken)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
