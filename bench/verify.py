"""Verify throughput with a million keys in the inventory.

    python bench/verify.py [--keys 1000000] [--duration 10] [--connections 32]

1. Builds (once, cached under --workdir) a SQLite inventory holding --keys
   keys, bulk-inserted; 2,000 of them with known plaintexts to verify.
2. Measures the verify cache in this process: load time and bytes per key
   (resident memory before/after the load).
3. Starts ``keyops serve`` as its own process, times start-up to /readyz.
4. Loads it with wrk (a separate process): first GET /v1/ping (a trivial
   endpoint, the baseline), then POST /v1/keys/verify over the known keys,
   then GET /v1/authz (forward-auth: the key in Authorization, the gateway's
   token in X-Keyops-Token), interleaved for --rounds rounds; prints the
   median requests/s and p50/p99 latency of each, and the ratios.

Targets: verify >= 70% and authz >= 90% of the trivial endpoint's rate;
cache <= 300 bytes per key; start-up with 1M keys < 15 s. Needs ``wrk``
on PATH.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from sqlalchemy import func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyops.api.cache_sync import load_cache  # noqa: E402
from keyops.bootstrap import build  # noqa: E402
from keyops.config import load_settings  # noqa: E402
from keyops.domain import keyformat  # noqa: E402
from keyops.domain.ids import uuid7  # noqa: E402
from keyops.inventory import models  # noqa: E402
from keyops.lifecycle.tokens import TokenService  # noqa: E402

KNOWN = 2000
CHUNK = 50_000


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def env_for(db: Path, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYOPS_")}
    env.update(
        KEYOPS_DATABASE_URL=f"sqlite:///{db}",
        KEYOPS_STORES_FILE_DIRECTORY=str(workdir / "secrets"),
        KEYOPS_LOG_LEVEL="WARNING",
        KEYOPS_LOG_FORMAT="json",
    )
    return env


def prepare(db: Path, workdir: Path, count: int) -> list[str]:
    """The inventory (reused when it already has ``count`` keys) and the known plaintexts."""
    known_file = workdir / "known.txt"
    env = env_for(db, workdir)
    app = build(load_settings(env=env))
    try:
        with app.engine.connect() as conn:
            have = conn.execute(select(func.count()).select_from(models.Key)).scalar_one()
        if have == count and known_file.exists():
            return known_file.read_text().split()
        if have:
            raise SystemExit(f"{db} holds {have} keys, not {count}: delete it or pick another --workdir")
        with app.sessions.begin() as session:
            spec = dict(session.get(models.Profile, "batch").spec)  # type: ignore[union-attr]
            spec["limits"] = {**spec["limits"], "requests_per_minute": 10**9, "burst": 10**9}
            session.add(models.Profile(name="bench", spec=spec, builtin=False))
        known: list[str] = []
        now = datetime.now(UTC)
        later = now + timedelta(days=3650)
        started = time.monotonic()
        for base in range(0, count, CHUNK):
            keys, versions = [], []
            for i in range(base, min(count, base + CHUNK)):
                key_id = uuid7()
                if i < KNOWN:
                    material = keyformat.generate("kops_live")
                    known.append(material.plaintext)
                    digest, prefix = material.secret_hash, material.display_prefix
                else:
                    digest, prefix = hashlib.sha256(secrets.token_bytes(24)).hexdigest(), "kops_live_xxxx"
                keys.append(
                    {
                        "id": key_id, "name": f"bench/k{i:07d}", "owner": f"team{i % 500}", "profile": "bench",
                        "policy": "standard", "issuer": "native", "state": "active", "description": "",
                        "labels": {}, "profile_overrides": {}, "issuer_config": {}, "created_at": now,
                        "updated_at": now, "next_rotation_at": later, "state_reason": "",
                    }
                )  # fmt: skip
                versions.append(
                    {
                        "id": uuid7(), "key_id": key_id, "number": 1, "state": "current", "secret_hash": digest,
                        "display_prefix": prefix, "created_at": now, "activated_at": now,
                    }
                )  # fmt: skip
            with app.engine.begin() as conn:
                conn.execute(insert(models.Key), keys)
                conn.execute(insert(models.KeyVersion), versions)
            print(f"  inserted {min(count, base + CHUNK):>9,} keys ({time.monotonic() - started:.0f}s)", flush=True)
        known_file.write_text("\n".join(known))
        return known
    finally:
        app.close()


def measure_cache(db: Path, workdir: Path) -> tuple[float, float, int]:
    app = build(load_settings(env=env_for(db, workdir)), prepare=False)
    try:
        gc.collect()
        before = rss()
        started = time.monotonic()
        cache = load_cache(app.engine)
        seconds = time.monotonic() - started
        gc.collect()
        per_key = (rss() - before) / max(1, len(cache))
        return seconds, per_key, len(cache)
    finally:
        app.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk(url: str, seconds: int, connections: int, script: Path | None) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rate, "p50": pct("50"), "p99": pct("99"), "non2xx": float(non2xx.group(1)) if non2xx else 0.0}


def lua_script(path: Path, token: str, known: list[str]) -> None:
    bodies = ",\n".join(f"'{orjson.dumps({'key': k}).decode()}'" for k in known)
    path.write_text(
        f"""
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{ {bodies} }}
local requests = {{}}
local i = 0
init = function(args)
  for n, body in ipairs(bodies) do
    requests[n] = wrk.format(nil, nil, nil, body)
  end
end
request = function()
  i = (i % #requests) + 1
  return requests[i]
end
"""
    )


def authz_script(path: Path, token: str, known: list[str]) -> None:
    keys = ",\n".join(f"'{k}'" for k in known)
    path.write_text(
        f"""
local keys = {{ {keys} }}
local requests = {{}}
local i = 0
init = function(args)
  for n, key in ipairs(keys) do
    local headers = {{["X-Keyops-Token"] = "{token}", ["Authorization"] = "Bearer " .. key}}
    requests[n] = wrk.format("GET", "/v1/authz", headers)
  end
end
request = function()
  i = (i % #requests) + 1
  return requests[i]
end
"""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three endpoints")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "keyops-bench-verify"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    workdir = Path(args.workdir) / str(args.keys)
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "inventory.db"

    print(f"inventory: {args.keys:,} keys in {db}")
    known = prepare(db, workdir, args.keys)
    load_s, per_key, cached = measure_cache(db, workdir)
    print(f"verify cache: {cached:,} keys loaded in {load_s:.1f}s, {per_key:.0f} bytes/key (target <= 300)")

    env = env_for(db, workdir)
    token = TokenService(build(load_settings(env=env), prepare=False).sessions).create(
        f"bench-{secrets.token_hex(3)}", "verify", actor="bench"
    )[1]
    port = free_port()
    log = (workdir / "serve.log").open("w")
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "keyops", "serve", "--port", str(port)],
        env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"keyops serve exited: see {workdir / 'serve.log'}")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            startup = time.monotonic() - started
            print(f"start-up to /readyz: {startup:.1f}s (target < 15s)")
            check = client.post("/v1/keys/verify", json={"key": known[0]}, headers={"Authorization": f"Bearer {token}"})
            assert check.json()["code"] == "VALID", check.text
            gated = client.get("/v1/authz", headers={"X-Keyops-Token": token, "Authorization": f"Bearer {known[0]}"})
            assert gated.status_code == 200, gated.text
        script = workdir / "verify.lua"
        lua_script(script, token, known)
        base = f"http://127.0.0.1:{port}"
        wrk(f"{base}/v1/ping", 2, args.connections, None)  # warm-up
        gate = workdir / "authz.lua"
        authz_script(gate, token, known)
        # Interleaved rounds, medians reported: on a shared machine the load
        # drifts between runs, and one run of each would compare different loads.
        targets = {
            "GET /v1/ping": (f"{base}/v1/ping", None),
            "POST /v1/keys/verify": (f"{base}/v1/keys/verify", script),
            "GET /v1/authz": (f"{base}/v1/authz", gate),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, lua) in targets.items():
                runs[name].append(wrk(url, args.duration, args.connections, lua))
        with open(f"/proc/{server.pid}/status") as f:
            server_rss = int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    rounds = f"x {args.rounds} rounds"
    print(f"\nwrk -t1 -c{args.connections} -d{args.duration}s {rounds} (server: 1 process, uvloop + httptools)")
    print(f"{'endpoint':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    median = {name: sorted(r, key=lambda run: run["rps"])[len(r) // 2] for name, r in runs.items()}
    for name, r in median.items():
        each = " / ".join(f"{run['rps']:.0f}" for run in runs[name])
        print(f"{name:<24}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['non2xx']:>10.0f}   rounds: {each}")
    baseline = median["GET /v1/ping"]["rps"]
    verify_ratio = median["POST /v1/keys/verify"]["rps"] / baseline
    authz_ratio = median["GET /v1/authz"]["rps"] / baseline
    print(f"\nverify / trivial: {verify_ratio:.0%} (target >= 70%)   server RSS: {server_rss:.0f} MiB")
    print(f"authz / trivial: {authz_ratio:.0%} (target >= 90%)   (medians of {args.rounds} interleaved rounds)")
    print(f"cache: {per_key:.0f} bytes/key   load: {load_s:.1f}s   start-up: {startup:.1f}s")


if __name__ == "__main__":
    main()
