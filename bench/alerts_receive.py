"""How fast the alert receiver answers, and how fast the outbox drains.

Prints, for signed Standard Webhooks and GitHub deliveries, the latency of
``app.alerts.receive`` (authenticate, parse, record, finding, outbox event,
action) on the embedded SQLite inventory, and the delivery rate of the
outbox to a local webhook sink.

    python bench/alerts_receive.py [--alerts 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from keyops.bootstrap import build
from keyops.config import load_settings
from keyops.logs import configure
from tests.unit.alerts import vendors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, latencies: list[float]) -> None:
    ms = [v * 1000 for v in latencies]
    rate = len(latencies) / sum(latencies)
    print(
        f"{label:<34} n={len(ms):<5} p50={statistics.median(ms):6.2f} ms  "
        f"p99={percentile(ms, 0.99):6.2f} ms  {rate:7.0f}/s (one thread)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=500)
    args = parser.parse_args()
    configure("ERROR", "text")

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "KEYOPS_DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
            "KEYOPS_LOG_LEVEL": "ERROR",
            "KEYOPS_STORES_FILE_DIRECTORY": str(Path(tmp) / "secrets"),
            "KEYOPS_ALERTS_STANDARD_ENABLED": "true",
            "KEYOPS_ALERTS_STANDARD_SECRETS": vendors.STANDARD_SECRET,
            "KEYOPS_ALERTS_GITHUB_ENABLED": "true",
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": f"http://127.0.0.1:{server.server_address[1]}/h",
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": vendors.STANDARD_SECRET,
            "PATH": os.environ.get("PATH", ""),
        }
        app = build(load_settings(env=env))
        pki = vendors.make_pki(Path(tmp))
        meta = vendors.github_meta(pki)
        app.alerts = type(app.alerts)(
            app.settings.alerts, app.sessions, app.keys, fetcher=lambda url: meta, background=False
        )
        names = []
        for i in range(100):
            issued = app.keys.issue(
                f"bench/key-{i}", owner="bench", profile="interactive", policy="standard", actor="b"
            )
            names.append(issued.key.name)
        notify: list[float] = []
        for i in range(args.alerts):
            headers, body = vendors.standard_delivery({"key_name": names[i % 100], "action": "notify", "reason": "x"})
            start = time.perf_counter()
            assert app.alerts.receive("standard", headers, body).status == 200
            notify.append(time.perf_counter() - start)
        report("standard, notify (finding+event)", notify)
        unknown: list[float] = []
        for _ in range(args.alerts):
            headers, body = vendors.standard_delivery({"key_name": "nobody/x", "action": "revoke"})
            start = time.perf_counter()
            assert app.alerts.receive("standard", headers, body).status == 200
            unknown.append(time.perf_counter() - start)
        report("standard, unknown key (no-op)", unknown)
        suspend: list[float] = []
        for name in names:
            headers, body = vendors.standard_delivery({"key_name": name, "action": "suspend", "reason": "x"})
            start = time.perf_counter()
            assert app.alerts.receive("standard", headers, body).status == 200
            suspend.append(time.perf_counter() - start)
        report("standard, suspend", suspend)
        refused: list[float] = []
        for _ in range(args.alerts):
            headers, body = vendors.standard_delivery(
                {"key_name": "x"}, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUE="
            )
            start = time.perf_counter()
            assert app.alerts.receive("standard", headers, body).status == 401
            refused.append(time.perf_counter() - start)
        report("standard, bad signature (401)", refused)
        github: list[float] = []
        for i in range(min(args.alerts, 200)):
            headers, body = vendors.github_delivery([f"ghp_notours{i}"], pki.github_key)
            start = time.perf_counter()
            assert app.alerts.receive("github", headers, body).status == 200
            github.append(time.perf_counter() - start)
        report("github, ECDSA verify, no match", github)
        start = time.perf_counter()
        total = rounds = 0
        while True:
            result = app.notify.deliver_due(worker_id="bench")
            total += result.delivered
            rounds += 1
            if result.claimed == 0:
                break
        elapsed = time.perf_counter() - start
        print(
            f"outbox drain to a local sink       {total} deliveries ({len(names)} keys, in order per key) "
            f"in {elapsed:.2f} s = {total / elapsed:.0f}/s"
        )
        app.close()
    server.shutdown()


if __name__ == "__main__":
    main()
