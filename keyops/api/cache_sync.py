"""Loading the verify cache and keeping it current on every replica.

Three things reach a running server's memory:

* a full load at start (one streaming query over versions joined to keys);
* the change log (``key_changes``, written by ``keyops.inventory.changes`` in
  the same transaction as each change), polled every ``server.change_poll_ms``;
  on PostgreSQL a ``LISTEN keyops_changes`` connection and, when configured,
  a Redis subscription wake the poller as soon as a change commits, so the
  delay is a round trip rather than a poll interval;
* a periodic full rebuild (``server.cache_refresh``) as the safety net, built
  beside the live cache and swapped in, with changes that arrived meanwhile
  re-applied to the new one.

On SQLite the log is read by ``seq`` (writers are serialised, so sequence
order is commit order). On PostgreSQL sequence values can commit out of
order, so the poller reads a recent time window and skips what it applied.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from keyops.api.cache import KeyRow, VerifyCache, VersionRow
from keyops.domain.specs import parse_profile
from keyops.inventory import models
from keyops.inventory.changes import CHANNEL
from keyops.inventory.types import utcnow

log = logging.getLogger("keyops.api.cache")

_PG_WINDOW = timedelta(seconds=30)
_BATCH = 500


@dataclass(frozen=True, slots=True)
class Limit:
    """A profile's token bucket: ``burst`` tokens, refilled at ``rate`` per second."""

    burst: int
    rate: float
    requests_per_minute: int


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    scopes: frozenset[str]


def _row(cols: list[Any], versions: list[VersionRow]) -> KeyRow:
    return KeyRow(cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], tuple(versions))


def _key_rows(engine: Engine, key_ids: list[str] | None) -> Iterator[KeyRow]:
    k, v = models.Key.__table__, models.KeyVersion.__table__
    stmt = (
        select(
            k.c.id,
            k.c.name,
            k.c.owner,
            k.c.profile,
            k.c.state,
            k.c.expires_at,
            v.c.secret_hash,
            v.c.number,
            v.c.state,
            v.c.grace_ends_at,
        )
        .select_from(k.outerjoin(v, (v.c.key_id == k.c.id) & v.c.secret_hash.is_not(None)))
        .order_by(k.c.id, v.c.number)
    )
    if key_ids is not None:
        stmt = stmt.where(k.c.id.in_(key_ids))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(stmt)
        current: list[Any] | None = None
        versions: list[VersionRow] = []
        for row in result:
            if current is None or row[0] != current[0]:
                if current is not None:
                    yield _row(current, versions)
                current = [row[0], row[1], row[2], row[3], row[4], row[5]]
                versions = []
            if row[6]:
                versions.append(VersionRow(bytes.fromhex(row[6]), row[7], row[8], row[9]))
        if current is not None:
            yield _row(current, versions)


_LOAD_SQL = (
    "SELECT k.id, k.name, k.owner, k.profile, k.state, k.expires_at,"
    " v.secret_hash, v.number, v.state, v.grace_ends_at"
    " FROM keys k JOIN key_versions v ON v.key_id = k.id"
    " WHERE v.secret_hash IS NOT NULL ORDER BY k.id, v.number"
)


def _epoch(value: Any) -> float:
    """A timestamp column as epoch seconds, straight from the driver: SQLite
    gives naive UTC text, PostgreSQL aware datetimes."""
    if value is None:
        return 0.0
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def _driver_rows(engine: Engine) -> Iterator[Any]:
    """The load query's rows as the DBAPI driver returns them (SQLAlchemy's
    row objects cost more than the rest of the load together)."""
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            with raw.dbapi_connection.cursor(name="keyops_cache_load") as cursor:  # type: ignore[union-attr]
                cursor.itersize = 20000
                cursor.execute(_LOAD_SQL)
                yield from cursor
            raw.rollback()
        else:
            cursor = raw.cursor()
            try:
                cursor.execute(_LOAD_SQL)
                while rows := cursor.fetchmany(20000):
                    yield from rows
            finally:
                cursor.close()
    finally:
        raw.close()


def _normalised(rows: Iterator[Any]) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        expires, grace = row[5], row[9]
        if expires is None and grace is None:
            yield row[0], row[1], row[2], row[3], row[4], 0.0, row[6], row[7], row[8], 0.0
        else:
            yield (
                row[0], row[1], row[2], row[3], row[4], 0.0 if expires is None else _epoch(expires),
                row[6], row[7], row[8], 0.0 if grace is None else _epoch(grace),
            )  # fmt: skip


def load_cache(engine: Engine) -> VerifyCache:
    """Every hashed version, in one streaming query on the driver's own rows
    (no ORM, no per-row objects): a million keys load in seconds."""
    cache = VerifyCache()
    cache.bulk_load(_normalised(_driver_rows(engine)))
    return cache


def load_limits(engine: Engine) -> dict[str, Limit]:
    limits: dict[str, Limit] = {}
    with engine.connect() as conn:
        for name, spec in conn.execute(select(models.Profile.name, models.Profile.spec)):
            try:
                profile = parse_profile(name, spec)
            except ValueError:
                log.warning("profile %s in the inventory is invalid; its keys get no rate limit", name)
                continue
            rpm = profile.limits.requests_per_minute
            limits[name] = Limit(burst=profile.limits.burst, rate=rpm / 60.0, requests_per_minute=rpm)
    return limits


def load_callers(engine: Engine) -> dict[str, Caller]:
    t = models.ApiToken
    with engine.connect() as conn:
        rows = conn.execute(select(t.token_hash, t.name, t.scopes).where(t.revoked_at.is_(None))).all()
    return {h: Caller(name, frozenset(str(s) for s in scopes or ())) for h, name, scopes in rows}


class CacheSync:
    """Owns the live cache, profile limits and caller tokens of one process."""

    def __init__(self, engine: Engine, *, poll_interval: float, refresh_every: float) -> None:
        self.engine = engine
        self.poll_interval = poll_interval
        self.refresh_every = refresh_every
        self.cache = VerifyCache()
        self.limits: dict[str, Limit] = {}
        self.callers: dict[str, Caller] = {}
        self.loaded = False
        self.last_load_seconds = 0.0
        self._is_pg = engine.dialect.name == "postgresql"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_seq = 0
        self._seen: dict[int, float] = {}
        self._recording: set[str] | None = None
        self._full_pending = False
        self.extra_wakers: list[Any] = []

    # ---------------------------------------------------------------- loads --

    def load(self) -> None:
        """Full load (at start, and as the periodic safety net)."""
        started = time.monotonic()
        cursor = self._cursor()
        with self._lock:
            self._recording = set()
        try:
            cache = load_cache(self.engine)
            limits = load_limits(self.engine)
            callers = load_callers(self.engine)
        finally:
            with self._lock:
                recorded, self._recording = self._recording or set(), None
        with self._lock:
            for row in self._rows(sorted(recorded)):
                cache.replace(row)
            self.cache, self.limits, self.callers = cache, limits, callers
            if not self.loaded:
                self._last_seq = cursor
            self.loaded = True
        self.last_load_seconds = time.monotonic() - started
        log.info("verify cache loaded", extra={"keys": len(cache), "seconds": round(self.last_load_seconds, 2)})

    def _rows(self, key_ids: list[str]) -> Iterator[KeyRow]:
        for i in range(0, len(key_ids), _BATCH):
            yield from _key_rows(self.engine, key_ids[i : i + _BATCH])

    def reload_keys(self, key_ids: Iterable[str]) -> None:
        ids = sorted(set(key_ids))
        rows = list(self._rows(ids))
        with self._lock:
            if self._recording is not None:
                self._recording.update(ids)
            for row in rows:
                self.cache.replace(row)
        if len(rows) < len(ids):
            # A key row vanished (an issue rolled back after its commit): its
            # digests are unknown now, so only a rebuild can drop them.
            self._full_pending = True

    # -------------------------------------------------------------- changes --

    def _cursor(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(models.KeyChange.seq).order_by(models.KeyChange.seq.desc()).limit(1)).scalar() or 0
            )

    def poll_once(self) -> int:
        """Apply committed changes not seen yet; returns how many rows were read."""
        kc = models.KeyChange.__table__
        stmt = select(kc.c.seq, kc.c.key_id, kc.c.kind)
        if self._is_pg:
            stmt = stmt.where(kc.c.changed_at >= utcnow() - _PG_WINDOW)
        else:
            stmt = stmt.where(kc.c.seq > self._last_seq)
        with self.engine.connect() as conn:
            rows = [r for r in conn.execute(stmt.order_by(kc.c.seq)) if r[0] not in self._seen]
        if not rows:
            return 0
        now = time.monotonic()
        keys: set[str] = set()
        kinds: set[str] = set()
        for seq, key_id, kind in rows:
            self._seen[seq] = now
            kinds.add(kind)
            if kind == "key" and key_id:
                keys.add(key_id)
        self._last_seq = max(self._last_seq, max(r[0] for r in rows))
        if self._is_pg:
            cutoff = now - 2 * _PG_WINDOW.total_seconds()
            self._seen = {s: t for s, t in self._seen.items() if t >= cutoff}
        else:
            self._seen.clear()
        if "all" in kinds:
            self._full_pending = True
        if keys:
            self.reload_keys(keys)
        if "profile" in kinds:
            self.limits = load_limits(self.engine)
        if "token" in kinds:
            self.callers = load_callers(self.engine)
        return len(rows)

    def wake(self) -> None:
        self._wake.set()

    def request_full_reload(self) -> None:
        """Rebuild the whole cache soon, in the background (for when change
        notifications may have been missed, e.g. a fan-out that was down)."""
        self._full_pending = True
        self._wake.set()

    def _follow(self) -> None:
        next_refresh = time.monotonic() + self.refresh_every
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.poll_once()
                if self._full_pending or time.monotonic() >= next_refresh:
                    self._full_pending = False
                    next_refresh = time.monotonic() + self.refresh_every
                    threading.Thread(target=self._safe_load, name="keyops-cache-refresh", daemon=True).start()
            except Exception:
                log.warning("verify cache: polling the change log failed; retrying", exc_info=True)
                self._stop.wait(1.0)

    def _safe_load(self) -> None:
        try:
            self.load()
        except Exception:
            log.warning("verify cache: full refresh failed; keeping the current cache", exc_info=True)

    def _listen_pg(self) -> None:
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.set()  # anything missed while (re)connecting
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.25):
                            self._wake.set()
            except Exception:
                log.warning("verify cache: LISTEN connection lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._follow, name="keyops-cache-follow", daemon=True)]
        if self._is_pg:
            self._threads.append(threading.Thread(target=self._listen_pg, name="keyops-cache-listen", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=3)

    def prune_changes(self, older_than: timedelta) -> int:
        """Delete change-log rows no replica needs any more."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(models.KeyChange).where(models.KeyChange.changed_at < utcnow() - older_than))
            return int(result.rowcount or 0)
