"""Admin API benchmark: the first page of ``GET /v1/admin/keys`` over a
large inventory, answered by ``keyops serve`` as its own process.

1. Fills a SQLite inventory with ``--keys`` keys (one current version each,
   500 owners) through SQLAlchemy Core (reused when it is already there).
2. Starts ``keyops serve`` on a free port and waits for /readyz.
3. Times, over ``--repeat`` requests each (one client, sequential, keep-alive):
   the first page (default size, 100), the first page of one owner's keys,
   a page deep in the inventory (by cursor), and a 1,000-key page.

Prints the median and p95 in milliseconds. Target: first page median < 100 ms.

Usage:
    python bench/admin_api.py                   # 100,000 keys
    python bench/admin_api.py --keys 20000 --repeat 50
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyops.api.admin import cursor
from keyops.bootstrap import build
from keyops.config import load_settings
from keyops.domain.ids import uuid7
from keyops.inventory import models
from keyops.lifecycle.tokens import TokenService

CHUNK = 20_000


def env_for(db: Path, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYOPS_")}
    env.update(
        KEYOPS_DATABASE_URL=f"sqlite:///{db}",
        KEYOPS_STORES_FILE_DIRECTORY=str(workdir / "secrets"),
        KEYOPS_AUDIT_KEY_FILE=str(workdir / "audit.key"),
        KEYOPS_LOG_LEVEL="WARNING",
    )
    return env


def prepare(env: dict[str, str], count: int) -> None:
    app = build(load_settings(env=env))
    try:
        with app.engine.connect() as conn:
            have = conn.execute(select(func.count()).select_from(models.Key)).scalar_one()
        if have == count:
            return
        if have:
            raise SystemExit(f"the inventory holds {have} keys, not {count}: pick another --workdir")
        now = datetime.now(UTC)
        later = now + timedelta(days=3650)
        started = time.monotonic()
        for base in range(0, count, CHUNK):
            keys, versions = [], []
            for i in range(base, min(count, base + CHUNK)):
                key_id = uuid7()
                keys.append(
                    {
                        "id": key_id, "name": f"bench/k{i:07d}", "owner": f"team{i % 500}", "profile": "batch",
                        "policy": "standard", "issuer": "native", "state": "active", "description": "",
                        "labels": {}, "profile_overrides": {}, "issuer_config": {}, "created_at": now,
                        "updated_at": now, "next_rotation_at": later, "state_reason": "",
                    }
                )  # fmt: skip
                versions.append(
                    {
                        "id": uuid7(), "key_id": key_id, "number": 1, "state": "current",
                        "secret_hash": secrets.token_hex(32), "display_prefix": "kops_live_xxxx",
                        "created_at": now, "activated_at": now,
                    }
                )  # fmt: skip
            with app.engine.begin() as conn:
                conn.execute(insert(models.Key), keys)
                conn.execute(insert(models.KeyVersion), versions)
            print(f"  inserted {min(count, base + CHUNK):>9,} keys ({time.monotonic() - started:.0f}s)", flush=True)
    finally:
        app.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(client: httpx.Client, path: str, headers: dict[str, str], repeat: int) -> tuple[float, float, int]:
    """(median ms, p95 ms, keys on the page)."""
    samples = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
        size = len(response.json())
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "keyops-bench-admin"))
    args = parser.parse_args()
    workdir = Path(args.workdir) / str(args.keys)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "inventory.db"
    env = env_for(db, workdir)
    print(f"inventory: {args.keys:,} keys in {db}")
    prepare(env, args.keys)
    token = TokenService(build(load_settings(env=env), prepare=False).sessions).create(
        f"bench-{secrets.token_hex(3)}", "auditor", actor="bench"
    )[1]
    port = free_port()
    log = (workdir / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "keyops", "serve", "--port", str(port)],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"keyops serve did not become ready: see {workdir / 'serve.log'}")
                try:
                    if (
                        client.get("/readyz").status_code == 200
                        and client.get("/v1/admin/keys?limit=1", headers=headers).status_code == 200
                    ):
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            deep = cursor.encode(f"bench/k{args.keys * 3 // 4:07d}")
            cases = [
                ("first page (100 keys)", "/v1/admin/keys"),
                ("first page of one owner", "/v1/admin/keys?owner=team7"),
                ("page 3/4 deep, by cursor", f"/v1/admin/keys?cursor={deep}"),
                ("first page of 1,000 keys", "/v1/admin/keys?limit=1000"),
            ]
            for _label, path in cases:
                timed(client, path, headers, 5)  # warm-up
            print(f"GET /v1/admin/keys, {args.repeat} sequential requests each, one keep-alive client")
            for label, path in cases:
                median, p95, size = timed(client, path, headers, args.repeat)
                print(f"  {label:<28} median {median:7.1f} ms   p95 {p95:7.1f} ms   ({size} keys)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
