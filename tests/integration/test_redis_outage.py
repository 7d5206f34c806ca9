"""Redis taken away under a running app (a private redis-server, stopped,
frozen and restarted): verify keeps answering from per-process buckets,
/readyz and the metrics say Redis is down, and everything shared comes
back by itself when Redis does."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.domain import keyformat
from keyops.lifecycle.tokens import TokenService
from tests.support.databases import sqlite_url
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

#: A verify answer while Redis is down must not wait for Redis: the timeout
#: is 250 ms, and once the breaker is open no call is made at all.
QUICK = 1.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def env(base_env: dict[str, str], tmp_path: Path, redis_server: RedisServer) -> dict[str, str]:
    return {
        **base_env,
        "KEYOPS_DATABASE_URL": sqlite_url(tmp_path),
        "KEYOPS_REDIS_URL": redis_server.url,
        "KEYOPS_REDIS_KEY_PREFIX": f"keyops-test-{secrets.token_hex(4)}:",
        "KEYOPS_REDIS_BREAKER_COOLDOWN": "1s",
        # A minute between change-log polls: only the Redis fan-out (or its
        # catch-up after a reconnect) can show a change within the test.
        "KEYOPS_SERVER_CHANGE_POLL_MS": "60000",
    }


@pytest.fixture
def apps(env: dict[str, str]) -> Iterator[tuple[App, App, App]]:
    """A writer (the CLI's view) and two replicas on one inventory and Redis."""
    built = tuple(build(load_settings(env=env)) for _ in range(3))
    yield built  # type: ignore[misc]
    for app in built:
        app.close()


def metric(client: TestClient, name: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


class Gateway:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def verify(self, key: str, headers: dict[str, str] | None = None) -> tuple[int, Any, float]:
        started = time.monotonic()
        answer = self.client.post(
            "/v1/keys/verify", content=orjson.dumps({"key": key}), headers=headers or self.headers
        )
        return answer.status_code, answer.json(), time.monotonic() - started


def valid_count(gateways: list[Gateway], key: str, requests: int) -> tuple[int, float]:
    """VALID answers out of ``requests`` spread over the gateways, and the seconds it took."""
    started = time.monotonic()
    valid = 0
    for i in range(requests):
        status, doc, _ = gateways[i % len(gateways)].verify(key)
        assert status == 200, doc
        assert doc["code"] in ("VALID", "RATE_LIMITED"), doc
        valid += doc["code"] == "VALID"
    return valid, time.monotonic() - started


def test_verify_serves_through_a_redis_outage_and_shares_again_after(
    apps: tuple[App, App, App], redis_server: RedisServer
) -> None:
    writer, first, second = apps
    token = TokenService(writer.sessions).create("gw", "verify", actor="test")[1]
    issue = writer.keys.issue
    before = issue("team/before", owner="t", profile="interactive", policy="standard", actor="t").plaintext
    during = issue("team/during", owner="t", profile="batch", policy="standard", actor="t").plaintext
    after = issue("team/after", owner="t", profile="interactive", policy="standard", actor="t").plaintext
    with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
        ga, gb = Gateway(a, token), Gateway(b, token)
        assert ga.verify(before)[1]["code"] == "VALID"
        assert metric(a, "keyops_redis_up") == 1
        wait_for(lambda: a.get("/readyz").json()["checks"].get("redis_fanout") == "ok", what="fan-out subscribed")

        redis_server.stop()

        # Every valid key still gets 200 VALID, quickly; nothing is a 500.
        for _ in range(10):
            status, doc, seconds = ga.verify(during)
            assert (status, doc["code"]) == (200, "VALID"), doc
            assert seconds < QUICK, f"verify took {seconds:.2f}s while Redis was down"
        unknown = ga.verify(keyformat.generate().plaintext)
        assert (unknown[0], unknown[1]["code"]) == (200, "NOT_FOUND"), unknown
        assert ga.verify(during, headers={"Authorization": "Bearer nope"})[0] == 401
        # Limits still hold, per replica: a fresh local bucket of 30 on ``a``.
        valid, elapsed = valid_count([ga], before, 40)
        assert 30 <= valid <= 30 + int(elapsed) + 1, (valid, elapsed)

        ready = a.get("/readyz")
        assert ready.status_code == 200, ready.text
        doc = ready.json()
        assert doc["ready"] is True and doc["degraded"] is True, doc
        assert doc["checks"]["redis"] == "down", doc
        wait_for(lambda: a.get("/readyz").json()["checks"]["redis_fanout"] == "down", what="fan-out seen down")
        assert metric(a, "keyops_redis_up") == 0
        assert metric(a, "keyops_redis_fanout_up") == 0
        assert metric(a, "keyops_redis_fallbacks_total") >= 50

        # A revocation while Redis is down: its notification cannot be
        # published (counted, not raised), and the replicas must still see it
        # once Redis is back, long before their next change-log poll.
        writer.keys.revoke("team/during", actor="test")
        # (The publisher is per process; here the last app started holds it.)
        assert metric(a, "keyops_redis_publish_failures_total") + metric(b, "keyops_redis_publish_failures_total") >= 1

        redis_server.start()

        def healthy(client: TestClient) -> bool:
            doc = client.get("/readyz").json()
            return doc["degraded"] is False and doc["checks"]["redis"] == "ok"

        wait_for(lambda: healthy(a) and healthy(b), timeout=15, what="both replicas to see Redis back")
        assert metric(a, "keyops_redis_up") == 1 and metric(b, "keyops_redis_fanout_up") == 1
        wait_for(lambda: ga.verify(during)[1]["code"] == "REVOKED", timeout=10, what="missed revocation on a")
        wait_for(lambda: gb.verify(during)[1]["code"] == "REVOKED", timeout=10, what="missed revocation on b")

        # Shared buckets again: one bucket of 30 refilled at 1/s for both
        # replicas, where two private ones would let all 40 through.
        fallbacks = metric(a, "keyops_redis_fallbacks_total")
        valid, elapsed = valid_count([ga, gb], after, 40)
        assert 30 <= valid <= 30 + int(elapsed) + 1, (valid, elapsed)
        assert metric(a, "keyops_redis_fallbacks_total") == fallbacks

        # A change made now travels over the reconnected fan-out.
        writer.keys.revoke("team/after", actor="test")
        wait_for(lambda: gb.verify(after)[1]["code"] == "REVOKED", timeout=2, what="REVOKED via the fan-out")


def test_a_hung_redis_costs_one_timeout_then_the_breaker_skips_it(
    apps: tuple[App, App, App], redis_server: RedisServer
) -> None:
    """SIGSTOP: connections are accepted but never answered, the case where
    only a timeout helps. Three calls wait 250 ms each, then the breaker opens
    and verify stops waiting; after ``resume`` a probe closes it again."""
    writer, first, _ = apps
    token = TokenService(writer.sessions).create("gw", "verify", actor="test")[1]
    key = writer.keys.issue("team/hung", owner="t", profile="batch", policy="standard", actor="t").plaintext
    with TestClient(create_app(first)) as client:
        gateway = Gateway(client, token)
        assert gateway.verify(key)[1]["code"] == "VALID"
        redis_server.pause()
        try:
            took = []
            for _ in range(20):
                status, doc, seconds = gateway.verify(key)
                assert status == 200 and doc["code"] in ("VALID", "RATE_LIMITED"), doc
                took.append(seconds)
            assert max(took) < QUICK, took
            # Without the breaker all 20 would wait the 250 ms timeout (5 s).
            assert sum(took) < 2.5, took
            assert client.get("/readyz").json()["checks"]["redis"] == "down"
        finally:
            redis_server.resume()
        wait_for(lambda: client.get("/readyz").json()["checks"]["redis"] == "ok", timeout=10, what="Redis back")
        assert metric(client, "keyops_redis_up") == 1
