"""``keyops serve`` with ``[stream] url``: usage goes through NATS JetStream.

A private nats-server (so it can be taken away): usage is answered 202 once
JetStream acknowledged it and reaches the stream; with NATS gone, /readyz
says not ready, usage answers 503 with Retry-After and keeps nothing, verify
keeps answering; NATS back, usage is accepted again without a restart. A
daemon started while NATS is unreachable stops with one line naming the
setting.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from keyops.bootstrap import App
from keyops.inventory import models
from keyops.stream.nats_js import JetStreamUsage
from keyops.stream.partitions import partition_of
from tests.e2e.serving import Served, make_token
from tests.support.databases import sqlite_url
from tests.support.nats_server import NatsServer, unique_name
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    if not NatsServer.available():
        pytest.skip("nats-server is not installed")
    server = NatsServer().start()
    yield server
    server.close()


def _stream_messages(url: str, name: str) -> int:
    import nats

    async def count() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(name)
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())


def _snapshot_seq(url: str, name: str, partition: int) -> int:
    async def read() -> int:
        stream = JetStreamUsage(url, name=name, partitions=4, lease_ttl=2, retention=3600)
        await stream.start()
        try:
            snap = await stream.load_snapshot(partition)
            return 0 if snap is None else snap.seq
        finally:
            await stream.close()

    return asyncio.run(read())


def _usage_rows(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(models.UsageMinute.requests), 0))).scalar_one())


def test_usage_through_the_stream_and_through_a_nats_outage(
    cli: Any, servers: Callable[..., Served], inventory: App, nats_server: NatsServer
) -> None:
    token = make_token(cli)
    issued = inventory.keys.issue("team/e2e-stream", owner="t", profile="batch", policy="standard", actor="t")
    name = unique_name("ke")
    server = servers(
        KEYOPS_STREAM_URL=nats_server.url, KEYOPS_STREAM_NAME=name, KEYOPS_STREAM_PARTITIONS="4",
        KEYOPS_STREAM_LEASE_TTL="2s", KEYOPS_STREAM_ACK_TIMEOUT_MS="500", KEYOPS_STREAM_SNAPSHOT_EVERY="1s",
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    now = time.time()
    body = [{"ts": now - 1, "key": issued.plaintext, "prompt": "hello"}, {"ts": now, "key_id": issued.key.id}]
    answer = server.http.post("/v1/usage", json=body, headers=auth)
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 2 and answer.json()["detection"] == {"accepted": 2, "rejected": []}
    # Both events name one key, so one partition, one message; the same body again is deduplicated.
    assert server.http.post("/v1/usage", json=body, headers=auth).status_code == 202
    assert _stream_messages(nats_server.url, name) == 1
    # The daemon's partition worker judged it and snapshotted the partition with its sequence.
    partition = partition_of(issued.key.id, 4)
    wait_for(lambda: _snapshot_seq(nats_server.url, name, partition) == 1, timeout=20, what="a partition snapshot")
    assert server.http.get("/readyz").json()["checks"]["stream"] == "ok"
    before = _usage_rows(inventory)

    nats_server.stop()
    wait_for(lambda: server.http.get("/readyz").status_code == 503, timeout=10, what="not ready without NATS")
    assert server.http.get("/readyz").json()["checks"]["stream"].startswith("unreachable")
    other = [{"ts": time.time(), "key_id": issued.key.id}]
    refused = server.http.post("/v1/usage", json=other, headers=auth)
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "2"
    assert "stream.url" in refused.json()["error"]
    assert _usage_rows(inventory) == before, "usage refused with 503 must leave nothing behind"
    assert server.verify(token, issued.plaintext)["code"] == "VALID"

    nats_server.start()
    wait_for(lambda: server.http.get("/readyz").status_code == 200, timeout=20, what="ready with NATS back")
    assert server.http.post("/v1/usage", json=other, headers=auth).status_code == 202
    assert _usage_rows(inventory) == before + 1
    assert server.terminate() < 10
    assert "Traceback" not in server.logs()
    assert issued.plaintext not in server.logs()


def test_serve_with_nats_unreachable_stops_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    from tests.e2e.serving import free_port

    dead = free_port()
    run_env = {**os.environ, **env, "KEYOPS_STREAM_URL": f"nats://127.0.0.1:{dead}"}
    result = subprocess.run(
        [sys.executable, "-m", "keyops", "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 7, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keyops: error: cannot reach NATS at nats://127.0.0.1:") and "stream.url" in last
    assert "Traceback" not in result.stderr
