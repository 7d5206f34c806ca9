"""Inventory benchmark: bulk-issue keys, then time the queries the daemon runs.

Prints, for SQLite and PostgreSQL:
- bulk issue rate (keys/s, through SQLAlchemy Core: keys + current versions),
- lookup by key hash (p50/p99 in microseconds over random existing keys),
- the "due for rotation" query at each size, with its query plan (it must use
  the ix_keys_due index: its cost must not grow with the inventory),
- database size per key.

Usage:
    python bench/inventory.py                      # 100k and 1M keys, both databases
    python bench/inventory.py --sizes 100000 --only sqlite
PostgreSQL comes from KEYOPS_BENCH_POSTGRES_URL or KEYOPS_TEST_POSTGRES_URL
(a scratch schema is created and dropped).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, insert, select, text
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyops.domain import keyformat
from keyops.domain.ids import uuid7
from keyops.inventory import migrate
from keyops.inventory.db import make_engine
from keyops.inventory.models import Key, KeyVersion

BATCH = 5000


def bulk_issue(engine: Engine, start: int, count: int, now: datetime) -> list[str]:
    """Insert ``count`` keys with one current version each; return a sample of hashes."""
    sample: list[str] = []
    for offset in range(start, start + count, BATCH):
        keys_rows: list[dict[str, Any]] = []
        version_rows: list[dict[str, Any]] = []
        for i in range(offset, min(offset + BATCH, start + count)):
            material = keyformat.generate()
            key_id = uuid7()
            keys_rows.append(
                {
                    "id": key_id,
                    "name": f"bench/key-{i:07d}",
                    "owner": f"team-{i % 500}",
                    "profile": "interactive",
                    "policy": "standard",
                    "issuer": "native",
                    "state": "active",
                    "description": "",
                    "labels": {},
                    "profile_overrides": {},
                    "issuer_config": {},
                    "created_at": now,
                    "updated_at": now,
                    # spread due dates over the next 90 days
                    "next_rotation_at": now + timedelta(seconds=random.randint(0, 90 * 86400)),
                    "state_reason": "",
                }
            )
            version_rows.append(
                {
                    "id": uuid7(),
                    "key_id": key_id,
                    "number": 1,
                    "state": "current",
                    "secret_hash": material.secret_hash,
                    "display_prefix": material.display_prefix,
                    "created_at": now,
                    "activated_at": now,
                }
            )
            if random.random() < 0.01:
                sample.append(material.secret_hash)
        with engine.begin() as conn:
            conn.execute(insert(Key), keys_rows)
            conn.execute(insert(KeyVersion), version_rows)
    return sample


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def time_lookups(engine: Engine, hashes: list[str], n: int = 5000) -> tuple[float, float]:
    stmt = (
        select(KeyVersion.id, KeyVersion.state, Key.id, Key.name, Key.state)
        .join(Key, Key.id == KeyVersion.key_id)
        .where(KeyVersion.secret_hash == bindparam("h"))
    )
    timings: list[float] = []
    with engine.connect() as conn:
        for _ in range(n):
            h = random.choice(hashes)
            t0 = time.perf_counter()
            row = conn.execute(stmt, {"h": h}).first()
            timings.append((time.perf_counter() - t0) * 1e6)
            assert row is not None
    return percentile(timings, 50), percentile(timings, 99)


DUE_SQL = "SELECT id FROM keys WHERE state = 'active' AND next_rotation_at <= :now ORDER BY next_rotation_at LIMIT 100"


def time_due(engine: Engine, now: datetime) -> tuple[float, str]:
    due_at = now + timedelta(days=1)
    bind = due_at if engine.dialect.name == "postgresql" else due_at.replace(tzinfo=None).isoformat(sep=" ")
    timings: list[float] = []
    with engine.connect() as conn:
        for _ in range(200):
            t0 = time.perf_counter()
            conn.execute(text(DUE_SQL), {"now": bind}).all()
            timings.append((time.perf_counter() - t0) * 1e6)
        if engine.dialect.name == "postgresql":
            plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + DUE_SQL), {"now": bind}))
        else:
            plan = "\n".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + DUE_SQL), {"now": bind}))
    return statistics.median(timings), plan


def size_bytes(engine: Engine, sqlite_path: Path | None) -> int:
    if sqlite_path is not None:
        raw = engine.raw_connection()  # outside a transaction, or the pragma is refused
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
        return sum(p.stat().st_size for p in sqlite_path.parent.glob(sqlite_path.name + "*"))
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ).scalar_one()
        )


def run(label: str, url: str, sizes: list[int], sqlite_path: Path | None) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    from keyops.bootstrap import build
    from keyops.config import load_settings

    build(load_settings(env={"KEYOPS_DATABASE_URL": url})).close()  # built-in profiles
    now = datetime.now(UTC)
    have, hashes = 0, []
    print(f"\n== {label} ==")
    for size in sizes:
        t0 = time.perf_counter()
        hashes += bulk_issue(engine, have, size - have, now)
        elapsed = time.perf_counter() - t0
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        print(f"bulk issue {size - have:>9,} keys: {elapsed:7.1f} s  ({(size - have) / elapsed:,.0f} keys/s)")
        have = size
        p50, p99 = time_lookups(engine, hashes)
        print(f"[{size:>9,} keys] lookup by key hash: p50 {p50:7.1f} us  p99 {p99:7.1f} us")
        due_us, plan = time_due(engine, now)
        print(f"[{size:>9,} keys] due-for-rotation query (LIMIT 100): median {due_us:8.1f} us")
        print("    plan: " + plan.replace("\n", "\n          "))
        total = size_bytes(engine, sqlite_path)
        print(f"[{size:>9,} keys] database size {total / 1e6:8.1f} MB = {total / size:6.0f} bytes per key")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated cumulative sizes")
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    random.seed(7)
    print(f"keyops inventory benchmark on {os.cpu_count()} cores, python {sys.version.split()[0]}")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.db"
            run("SQLite (WAL)", f"sqlite:///{path}", sizes, path)
    pg = os.environ.get("KEYOPS_BENCH_POSTGRES_URL") or os.environ.get("KEYOPS_TEST_POSTGRES_URL")
    if args.only in (None, "postgres"):
        if not pg:
            print("\nPostgreSQL skipped: set KEYOPS_BENCH_POSTGRES_URL")
            return
        schema = f"bench_{secrets.token_hex(4)}"
        admin = create_engine(pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            sep = "&" if "?" in pg else "?"
            run("PostgreSQL", f"{pg}{sep}options=-csearch_path%3D{schema}", sizes, None)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
