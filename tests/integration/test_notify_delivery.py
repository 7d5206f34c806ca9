"""Outbound events: a real local HTTP server receives them and checks each
Standard Webhooks signature; a sink that is down loses nothing, blocks
nothing else, and gets every event in order per key once it is back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.notify.dispatcher import backoff
from keyops.notify.outbox import emit

OPS_SECRET = "whsec_" + base64.b64encode(b"ops-sink-signing-secret-000001").decode()
AUDIT_SECRET = "raw-secret-for-the-audit-sink-0001"


@dataclass
class Receiver:
    """A webhook consumer: verifies signatures the way the spec says, records
    what it accepted, and can be told to fail."""

    secret: bytes
    port: int = 0
    mode: str = "ok"  # ok | fail | flaky
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected_signatures: int = 0
    requests: int = 0
    slack: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.requests += 1
                    status = outer.handle(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        if path == "/slack":
            self.slack.append(json.loads(body)["text"])
            return 200
        if self.mode == "fail" or (self.mode == "flaky" and self.requests % 3 == 0):
            return 503
        lowered = {k.lower(): v for k, v in headers.items()}
        msg_id, stamp = lowered.get("webhook-id", ""), lowered.get("webhook-timestamp", "")
        expected = base64.b64encode(
            hmac.new(self.secret, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        offered = [s.partition(",")[2] for s in lowered.get("webhook-signature", "").split()]
        fresh = abs(datetime.now(UTC).timestamp() - int(stamp or 0)) < 300
        if not fresh or not any(hmac.compare_digest(expected, sig) for sig in offered):
            self.rejected_signatures += 1
            return 401
        doc = json.loads(body)
        self.accepted.append({"id": msg_id, **doc})
        return 204


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sinks() -> Iterator[tuple[Receiver, Receiver]]:
    ops = Receiver(base64.b64decode(OPS_SECRET[6:]), port=free_port())  # not started: down
    audit_sink = Receiver(AUDIT_SECRET.encode()).start()
    yield ops, audit_sink
    ops.stop()
    audit_sink.stop()


@pytest.fixture
def notify_app(env: dict[str, str], sinks: tuple[Receiver, Receiver]) -> Iterator[App]:
    ops, audit_sink = sinks
    env = dict(env)
    env.update(
        {
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": f"http://127.0.0.1:{ops.port}/hooks",
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": OPS_SECRET,
            "KEYOPS_NOTIFY_WEBHOOKS_AUDIT_URL": f"http://127.0.0.1:{audit_sink.port}/hooks",
            "KEYOPS_NOTIFY_WEBHOOKS_AUDIT_SECRET": AUDIT_SECRET,
            "KEYOPS_NOTIFY_WEBHOOKS_AUDIT_EVENTS": "test.step,key.revoked",
            "KEYOPS_NOTIFY_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{audit_sink.port}/slack",
            "KEYOPS_NOTIFY_BACKOFF_INITIAL": "1s",
            "KEYOPS_NOTIFY_BACKOFF_MAX": "4s",
            "KEYOPS_NOTIFY_TIMEOUT": "2s",
        }
    )
    app = build(load_settings(env=env))
    yield app
    app.close()


def issue(app: App, name: str) -> str:
    return app.keys.issue(name, owner="team", profile="interactive", policy="standard", actor="test").key.id


def pending(app: App) -> list[models.OutboxDelivery]:
    with app.sessions() as session:
        stmt = select(models.OutboxDelivery).where(models.OutboxDelivery.status == "pending")
        return list(session.execute(stmt).scalars())


def test_lifecycle_events_are_signed_and_reach_every_sink(notify_app: App, sinks: tuple[Receiver, Receiver]) -> None:
    ops, audit_sink = sinks
    ops.start()
    key_id = issue(notify_app, "payments/prod-llm")
    notify_app.keys.suspend(key_id, actor="cli:alice", reason="investigating")
    notify_app.keys.revoke(key_id, actor="cli:alice", reason="leaked in a paste")
    report = notify_app.notify.deliver_due(worker_id="w1")
    assert report.failed == 0 and report.dead == 0, report.errors
    assert [e["type"] for e in ops.accepted] == ["key.suspended", "key.revoked"]
    assert ops.accepted[1]["data"]["key_name"] == "payments/prod-llm"
    assert ops.accepted[1]["data"]["reason"] == "leaked in a paste"
    assert ops.rejected_signatures == 0
    assert [e["type"] for e in audit_sink.accepted] == ["key.revoked"]  # it subscribed to that type only
    assert len(audit_sink.slack) == 2 and "*payments/prod-llm* was revoked" in audit_sink.slack[1]
    assert pending(notify_app) == []
    # delivered once: a second run sends nothing
    assert notify_app.notify.deliver_due(worker_id="w1").claimed == 0
    rows = notify_app.notify.list_deliveries()
    assert {(r.type, r.sink, r.status, r.attempts) for r in rows} >= {("key.revoked", "ops", "delivered", 1)}


def test_a_sink_that_is_down_loses_nothing_blocks_nothing_and_keeps_order(
    notify_app: App, sinks: tuple[Receiver, Receiver]
) -> None:
    ops, audit_sink = sinks
    keys = [issue(notify_app, f"team/key-{i}") for i in range(3)]
    with notify_app.sessions.begin() as session:
        for step in range(5):
            for key_id in keys:
                emit(session, "test.step", key_id, {"key_id": key_id, "step": step})
        emit(session, "test.step", None, {"step": "keyless"})
    now = datetime.now(UTC)
    # Phase 1: nothing listens on the ops port. The audit sink still gets everything.
    for i in range(3):
        report = notify_app.notify.deliver_due(now + timedelta(seconds=10 * i), worker_id="w1")
        assert report.delivered >= 0
    assert len(audit_sink.accepted) == 16
    ops_pending = [d for d in pending(notify_app) if d.sink == "ops"]
    assert len(ops_pending) == 16 and max(d.attempts for d in ops_pending) >= 2
    assert all(d.last_error for d in ops_pending if d.attempts)
    # Phase 2: the sink answers 503 for a while.
    ops.start()
    ops.mode = "fail"
    notify_app.notify.deliver_due(now + timedelta(seconds=60), worker_id="w1")
    assert ops.accepted == [] and len(pending(notify_app)) == 16
    # Phase 3: back, but flaky; two replicas drain the outbox concurrently.
    ops.mode = "flaky"
    later = now + timedelta(minutes=5)

    # Replicas with agreeing clocks: each round both workers see the same
    # simulated time, so neither can run the clock past the other's claim
    # leases while it is still sending (which would be a takeover, not a race).
    rounds = threading.Barrier(2, timeout=60)

    def drain(worker: str) -> None:
        for i in range(200):
            notify_app.notify.deliver_due(later + timedelta(seconds=10 * i), worker_id=worker)
            rounds.wait()  # both rounds done: what is pending now is settled
            if not pending(notify_app):
                return

    threads = [threading.Thread(target=drain, args=(w,)) for w in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert pending(notify_app) == []
    assert ops.rejected_signatures == 0
    ids = [e["id"] for e in ops.accepted]
    assert len(ids) == len(set(ids)) == 16  # every event exactly once
    for key_id in keys:
        steps = [e["data"]["step"] for e in ops.accepted if e["data"].get("key_id") == key_id]
        assert steps == [0, 1, 2, 3, 4], steps


def test_dead_after_max_attempts_and_unconfigured_sink(env: dict[str, str]) -> None:
    env = dict(env)
    env.update(
        {
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": f"http://127.0.0.1:{free_port()}/x",
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": OPS_SECRET,
            "KEYOPS_NOTIFY_MAX_ATTEMPTS": "2",
        }
    )
    app = build(load_settings(env=env))
    try:
        with app.sessions.begin() as session:
            emit(session, "test.step", None, {"n": 1})
            emit(session, "test.step", None, {"n": 2}, routes=[])
            event = emit(session, "test.step", None, {"n": 3})
            session.add(models.OutboxDelivery(event_seq=event.seq, sink="gone", next_attempt_at=datetime.now(UTC)))
        start = datetime.now(UTC)
        # An unreachable sink is tried once per call (the rest waits), so it takes a few calls.
        for hours in range(5):
            app.notify.deliver_due(start + timedelta(hours=hours), worker_id="w")
        statuses = sorted((r.sink, r.status, r.attempts) for r in app.notify.list_deliveries())
        assert statuses == [("gone", "dead", 1), ("ops", "dead", 2), ("ops", "dead", 2)]
        assert all(r.last_error for r in app.notify.list_deliveries())
    finally:
        app.close()


def test_backoff_grows_and_is_capped() -> None:
    assert [round(backoff(n, 2, 60, lambda: 0.5)) for n in (1, 2, 3, 10)] == [2, 4, 8, 60]
    assert 1.6 <= backoff(1, 2, 60, lambda: 0.0) <= 2.4


def test_events_list_cli(cli, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    extra = {"KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": "http://127.0.0.1:9/x", "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": OPS_SECRET}
    app = build(load_settings(env={**env, **extra}))
    try:
        issue(app, "team/cli-key")
        app.keys.suspend("team/cli-key", actor="test", reason="test")
    finally:
        app.close()
    result = cli("events", "list", "--json", extra_env=extra)
    assert result.code == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert (row["type"], row["key_name"], row["sink"], row["status"], row["attempts"]) == (
        "key.suspended",
        "team/cli-key",
        "ops",
        "pending",
        0,
    )
    bad = cli("events", "list", "--status", "lost", extra_env=extra)
    assert bad.code == 6 and "unknown status" in bad.stderr


def test_a_hanging_sink_costs_one_timeout_and_delays_no_other_sink(
    env: dict[str, str], sinks: tuple[Receiver, Receiver]
) -> None:
    _, audit_sink = sinks
    hanging = socket.socket()  # accepts connections (kernel backlog) and never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    env = dict(env)
    env.update(
        {
            "KEYOPS_NOTIFY_WEBHOOKS_SLOW_URL": f"http://127.0.0.1:{hanging.getsockname()[1]}/hooks",
            "KEYOPS_NOTIFY_WEBHOOKS_SLOW_SECRET": OPS_SECRET,
            "KEYOPS_NOTIFY_WEBHOOKS_AUDIT_URL": f"http://127.0.0.1:{audit_sink.port}/hooks",
            "KEYOPS_NOTIFY_WEBHOOKS_AUDIT_SECRET": AUDIT_SECRET,
            "KEYOPS_NOTIFY_TIMEOUT": "1s",
        }
    )
    app = build(load_settings(env=env))
    try:
        with app.sessions.begin() as session:
            for i in range(12):
                emit(session, "test.step", None, {"step": i})
        started = time.monotonic()
        report = app.notify.deliver_due(worker_id="w")
        elapsed = time.monotonic() - started
        assert len(audit_sink.accepted) == 12  # the other sink got everything, in the same call
        assert elapsed < 8, elapsed  # 12 deliveries to a hanging sink did not cost 12 timeouts
        slow = [r for r in app.notify.list_deliveries() if r.sink == "slow"]
        assert {r.status for r in slow} == {"pending"}
        attempted = [r for r in slow if r.attempts]
        assert 1 <= len(attempted) <= 3 and all("Timeout" in r.last_error for r in attempted)
        assert report.delivered == 12
    finally:
        app.close()
        hanging.close()
