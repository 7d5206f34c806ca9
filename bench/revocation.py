"""Revocation-to-deny latency across two replicas.

    KEYOPS_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/revocation.py [--count 100] [--backend postgres|sqlite]

Starts two ``keyops serve`` processes on one inventory (PostgreSQL: LISTEN/
NOTIFY plus the change-log poll; SQLite: the poll alone), issues --count keys,
then revokes them one at a time through ``KeyService.revoke`` (the call behind
``keyops keys revoke``; the CLI's own path is covered by the e2e test) and
polls both replicas until each answers REVOKED. Latency = from just before
the revoking transaction starts to the moment the slower replica denies.
Prints p50, p99 and max (target: within 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyops.bootstrap import build  # noqa: E402
from keyops.config import load_settings  # noqa: E402
from keyops.lifecycle.tokens import TokenService  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (workdir / f"serve-{port}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyops", "serve", "--port", str(port)],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"keyops serve exited; see {log.name}")
            try:
                if client.get("/readyz").status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise SystemExit("keyops serve did not become ready in 60 s")


async def until_revoked(client: httpx.AsyncClient, url: str, token: str, key: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        answer = await client.post(f"{url}/v1/keys/verify", json={"key": key}, headers=headers)
        if answer.json()["code"] == "REVOKED":
            return time.monotonic()
        await asyncio.sleep(0.002)


async def measure(app: object, urls: list[str], token: str, keys: list[tuple[str, str]]) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(timeout=10) as client:
        for name, key in keys:
            for url in urls:
                answer = await client.post(
                    f"{url}/v1/keys/verify", json={"key": key}, headers={"Authorization": f"Bearer {token}"}
                )
                assert answer.json()["code"] == "VALID", answer.text
            watchers = [asyncio.create_task(until_revoked(client, url, token, key)) for url in urls]
            started = time.monotonic()
            await asyncio.to_thread(app.keys.revoke, name, actor="bench", reason="bench")  # type: ignore[attr-defined]
            denied = await asyncio.gather(*watchers)
            latencies.append(max(denied) - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="keyops-bench-revocation-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYOPS_")}
    env.update(KEYOPS_LOG_LEVEL="WARNING", KEYOPS_STORES_FILE_DIRECTORY=str(workdir / "secrets"))
    schema = None
    admin = None
    if args.backend == "postgres":
        base = os.environ.get("KEYOPS_BENCH_POSTGRES_URL") or os.environ.get("KEYOPS_TEST_POSTGRES_URL")
        if not base:
            raise SystemExit("set KEYOPS_BENCH_POSTGRES_URL (postgresql+psycopg://user@host/db)")
        schema = f"bench_{secrets.token_hex(4)}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        env["KEYOPS_DATABASE_URL"] = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    else:
        env["KEYOPS_DATABASE_URL"] = f"sqlite:///{workdir / 'inventory.db'}"
    app = build(load_settings(env=env))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        token = TokenService(app.sessions).create("bench", "verify", actor="bench")[1]
        keys = []
        for i in range(args.count):
            issued = app.keys.issue(f"bench/rev{i:03d}", owner="bench", profile="batch", policy="standard", actor="b")
            keys.append((issued.key.name, issued.plaintext))
        urls = []
        for _ in range(2):
            proc, url = start(env, workdir)
            procs.append(proc)
            urls.append(url)
        latencies = asyncio.run(measure(app, urls, token, keys))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        app.close()
        if admin is not None and schema is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[max(0, round(0.99 * len(ms)) - 1)]
    print(f"revocation -> deny on both of 2 replicas ({args.backend}), {len(ms)} revocations:")
    print(f"  p50 {statistics.median(ms):.0f} ms   p99 {p99:.0f} ms   max {ms[-1]:.0f} ms   (target: 1000 ms)")


if __name__ == "__main__":
    main()
