"""``keyops serve`` through a Redis outage: a private redis-server is killed
under a running daemon (and is down when a second one starts); verify keeps
answering, /readyz stays 200 but says degraded, and Redis coming back is
noticed without a restart."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keyops.bootstrap import App
from tests.e2e.serving import Served, make_token
from tests.support.databases import sqlite_url
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the outage is Redis', the inventory does not matter here."""
    return sqlite_url(tmp_path)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    yield server
    server.close()


def test_serve_keeps_verifying_while_redis_is_down(
    cli: Any, servers: Callable[..., Served], inventory: App, redis_server: RedisServer
) -> None:
    token = make_token(cli)
    key = inventory.keys.issue("team/e2e-redis", owner="t", profile="batch", policy="standard", actor="t").plaintext
    redis_env = {"KEYOPS_REDIS_URL": redis_server.url, "KEYOPS_REDIS_BREAKER_COOLDOWN": "1s"}
    server = servers(**redis_env)
    assert server.verify(token, key)["code"] == "VALID"

    redis_server.stop()
    for _ in range(5):
        started = time.monotonic()
        assert server.verify(token, key)["code"] == "VALID"  # verify() asserts the 200
        assert time.monotonic() - started < 1.0
    ready = server.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["degraded"] is True and ready.json()["checks"]["redis"] == "down"
    assert "keyops_redis_up 0" in server.http.get("/metrics").text

    # A replica started during the outage becomes ready and serves.
    late = servers(**redis_env)
    assert late.verify(token, key)["code"] == "VALID"

    redis_server.start()

    def recovered(replica: Served) -> bool:
        return replica.http.get("/readyz").json()["degraded"] is False

    for replica in (server, late):
        wait_for(functools.partial(recovered, replica), timeout=15, what="Redis seen back without a restart")
        assert "keyops_redis_fanout_up 1" in replica.http.get("/metrics").text
    assert server.terminate() < 8
    assert "Traceback" not in server.logs()
