"""Rate limits shared through a real Redis by two app instances (two replicas)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.lifecycle.tokens import TokenService
from tests.support.databases import REDIS_ENV, sqlite_url
from tests.support.waiting import wait_for


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis tests skipped: {REDIS_ENV} is not set")
    return url


@pytest.fixture
def replicas(base_env: dict[str, str], tmp_path: Path, redis_url: str) -> Iterator[tuple[App, App]]:
    env = dict(base_env)
    env["KEYOPS_DATABASE_URL"] = sqlite_url(tmp_path)
    env["KEYOPS_REDIS_URL"] = redis_url
    env["KEYOPS_REDIS_KEY_PREFIX"] = f"keyops-test-{secrets.token_hex(4)}:"
    first = build(load_settings(env=env))
    second = build(load_settings(env=env))
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_buckets_are_shared_across_replicas(replicas: tuple[App, App]) -> None:
    first, second = replicas
    token = TokenService(first.sessions).create("gw", "verify", actor="test")[1]
    key = first.keys.issue("team/shared", owner="t", profile="interactive", policy="standard", actor="t").plaintext
    headers = {"Authorization": f"Bearer {token}"}
    body = orjson.dumps({"key": key})
    with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
        started = time.monotonic()
        codes = {"a": [], "b": []}  # type: dict[str, list[str]]
        for i in range(40):
            name, client = ("a", a) if i % 2 == 0 else ("b", b)
            answer = client.post("/v1/keys/verify", content=body, headers=headers)
            assert answer.status_code == 200
            codes[name].append(answer.json()["code"])
        elapsed = time.monotonic() - started
    valid = codes["a"].count("VALID") + codes["b"].count("VALID")
    # One bucket of 30 refilled at 1/s; two private buckets would allow 40.
    assert 30 <= valid <= 30 + int(elapsed) + 1, (valid, elapsed)
    assert "RATE_LIMITED" in codes["a"] and "RATE_LIMITED" in codes["b"]


def test_redis_pubsub_carries_changes_without_polling(base_env: dict[str, str], tmp_path: Path, redis_url: str) -> None:
    """With the change-log poll set to a minute, only the Redis wake-up can
    make a replica see a revocation within the test's 2 s."""
    env = dict(base_env)
    env.update(
        KEYOPS_DATABASE_URL=sqlite_url(tmp_path),
        KEYOPS_REDIS_URL=redis_url,
        KEYOPS_REDIS_KEY_PREFIX=f"keyops-test-{secrets.token_hex(4)}:",
        KEYOPS_SERVER_CHANGE_POLL_MS="60000",
    )
    writer, replica = build(load_settings(env=env)), build(load_settings(env=env))
    try:
        token = TokenService(writer.sessions).create("gw", "verify", actor="test")[1]
        key = writer.keys.issue("team/fan", owner="t", profile="batch", policy="standard", actor="t").plaintext
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(replica)) as client:

            def code() -> str:
                return str(client.post("/v1/keys/verify", json={"key": key}, headers=headers).json()["code"])

            assert code() == "VALID"
            writer.keys.revoke("team/fan", actor="test")
            started = time.monotonic()
            wait_for(lambda: code() == "REVOKED", timeout=2, what="REVOKED via Redis pub/sub")
            assert time.monotonic() - started < 2
    finally:
        writer.close()
        replica.close()
