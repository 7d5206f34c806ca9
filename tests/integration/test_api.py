"""The HTTP API in-process (Starlette TestClient, real SQLite/PostgreSQL):
auth, every verify code, change propagation into the cache, usage intake."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.bootstrap import App
from keyops.domain import keyformat
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle.tokens import TokenService
from keyops.lifecycle.usage import usage_summary
from tests.support.waiting import wait_for


@pytest.fixture
def token(app: App) -> str:
    return TokenService(app.sessions).create("gateway", "verify,usage", actor="test")[1]


@pytest.fixture
def client(app: App, token: str) -> Iterator[TestClient]:
    """The app with its lifespan run (cache loaded, no scheduler); ``token`` exists before it starts."""
    with TestClient(create_app(app, worker_id="test")) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def verify(client: TestClient, token: str, key: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/keys/verify", content=orjson.dumps({"key": key, **extra}), headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def issue(app: App, name: str = "team/api", **kwargs: Any) -> str:
    return app.keys.issue(
        name, owner="team", profile="interactive", policy="standard", actor="test", **kwargs
    ).plaintext


def code_becomes(client: TestClient, token: str, key: str, code: str, timeout: float = 2.0) -> None:
    wait_for(lambda: verify(client, token, key)["code"] == code, timeout=timeout, what=f"verify answering {code}")


def test_auth_missing_wrong_and_scope(app: App, client: TestClient, token: str) -> None:
    body = orjson.dumps({"key": "x"})
    assert client.post("/v1/keys/verify", content=body).status_code == 401
    assert client.post("/v1/keys/verify", content=body, headers=auth("kopt_wrong")).status_code == 401
    assert client.post("/v1/keys/verify", content=body, headers={"Authorization": "Basic abc"}).status_code == 401
    usage_only = TokenService(app.sessions).create("usage-only", "usage", actor="test")[1]
    answer = wait_for(
        lambda: (r := client.post("/v1/keys/verify", content=body, headers=auth(usage_only))).status_code == 403 and r,
        timeout=2,
        what="a new token known to the server",
    )
    assert "verify" in answer.json()["error"]
    assert client.post("/v1/keys/verify", content=body, headers=auth(token)).status_code == 200
    TokenService(app.sessions).revoke("gateway", actor="test")
    wait_for(
        lambda: client.post("/v1/keys/verify", content=body, headers=auth(token)).status_code == 401,
        timeout=2,
        what="revoked token refused",
    )


def test_verify_codes_and_invalidation(app: App, client: TestClient, token: str) -> None:
    key = issue(app)  # issued while serving: reaches the cache through the change log
    code_becomes(client, token, key, "VALID")
    answer = verify(client, token, key)
    assert answer["valid"] is True and answer["code"] == "VALID"
    assert answer["name"] == "team/api" and answer["owner"] == "team" and answer["profile"] == "interactive"
    assert answer["version"] == 1 and answer["version_state"] == "current"
    assert answer["ratelimit"]["limit"] == 30 and 0 < answer["ratelimit"]["remaining"] < 30
    assert answer["ratelimit"]["requests_per_minute"] == 60, "the interactive profile's sustained rate"

    broken = key[:-1] + ("A" if key[-1] != "A" else "B")
    malformed = verify(client, token, broken)
    assert malformed["code"] == "MALFORMED" and malformed["valid"] is False and malformed["key_id"] is None
    assert verify(client, token, "")["code"] == "MALFORMED"
    assert verify(client, token, keyformat.generate("kops_live").plaintext)["code"] == "NOT_FOUND"

    started = time.monotonic()
    app.keys.suspend("team/api", actor="test", reason="checking")
    code_becomes(client, token, key, "SUSPENDED")
    assert time.monotonic() - started < 1.5
    app.keys.resume("team/api", actor="test")
    code_becomes(client, token, key, "VALID")
    app.keys.revoke("team/api", actor="test")
    code_becomes(client, token, key, "REVOKED")


def test_previous_version_in_grace_then_expired(app: App, client: TestClient, token: str) -> None:
    old = issue(app, "team/rot")
    new = keyformat.generate("kops_live")
    # What a rotation leaves behind, written directly: v1 previous (grace), v2 current.
    with app.sessions.begin() as session:
        key = session.execute(select(models.Key).where(models.Key.name == "team/rot")).scalar_one()
        v1 = key.versions[0]
        v1.state = "previous"
        v1.grace_ends_at = utcnow() + timedelta(hours=1)
        session.add(
            models.KeyVersion(key_id=key.id, number=2, state="current", secret_hash=new.secret_hash, display_prefix="x")
        )
    code_becomes(client, token, new.plaintext, "VALID")
    answer = verify(client, token, old)
    assert answer["code"] == "VALID" and answer["version_state"] == "previous" and answer["version"] == 1
    assert answer["grace_ends_at"] is not None
    with app.sessions.begin() as session:
        session.execute(
            update(models.KeyVersion).where(models.KeyVersion.number == 1).values(grace_ends_at=utcnow())
        )  # a bulk update: publishes "reload everything"
    code_becomes(client, token, old, "EXPIRED", timeout=5)
    assert verify(client, token, new.plaintext)["code"] == "VALID"


def test_expiry_and_rate_limit(app: App, token: str) -> None:
    key = issue(app, "team/limited", expires_at=utcnow() + timedelta(hours=1))
    with TestClient(create_app(app, worker_id="test")) as client:  # loads the key at start
        _expiry_and_rate_limit(app, client, token, key)


def _expiry_and_rate_limit(app: App, client: TestClient, token: str, key: str) -> None:
    codes = [verify(client, token, key)["code"] for _ in range(30)]
    assert codes == ["VALID"] * 30  # burst 30 for the interactive profile
    limited = verify(client, token, key)
    assert limited["code"] == "RATE_LIMITED" and limited["valid"] is False
    assert limited["ratelimit"]["remaining"] == 0 and limited["ratelimit"]["reset"] >= 1
    with app.sessions.begin() as session:
        row = session.execute(select(models.Key).where(models.Key.name == "team/limited")).scalar_one()
        row.expires_at = utcnow() - timedelta(seconds=1)
    code_becomes(client, token, key, "EXPIRED")


BAD_VERIFY_BODIES = [
    (b"{bad", "not valid JSON"),
    (b"[1]", "JSON object"),
    (b"{}", '"key"'),
    (b'{"key": 5}', '"key"'),
    (b'{"key": "k", "cost": 0}', '"cost"'),
    (b'{"key": "k", "cost": true}', '"cost"'),
    (b'{"key": "' + b"k" * 5000 + b'"}', "too large"),
]


def test_verify_bad_bodies_are_400(client: TestClient, token: str) -> None:
    for body, fragment in BAD_VERIFY_BODIES:
        answer = client.post("/v1/keys/verify", content=body, headers=auth(token))
        assert answer.status_code == 400, body[:40]
        assert fragment in answer.json()["error"], body[:40]


def test_usage_intake(app: App, client: TestClient, token: str) -> None:
    key = issue(app, "team/used")
    key_id = app.keys.show("team/used").id
    now = time.time()
    events = [
        {"ts": now, "key": key, "ip": "203.0.113.7", "endpoint": "/v1/messages", "status": 200,
         "duration_ms": 812, "input_tokens": 1200, "output_tokens": 900},
        {"ts": now, "key_id": key_id, "status": 500, "input_tokens": 10, "output_tokens": 0},
        {"ts": now, "key_hash": hashlib.sha256(key.encode()).hexdigest(), "input_tokens": 1},
        {"ts": now},
        {"ts": "yesterday", "key_id": key_id},
        {"ts": now, "key_id": "01a219f8-29d5-7c4c-8c13-51eb0e4ef2e4"},
        {"ts": now, "key": keyformat.generate("kops_live").plaintext},
        "not an object",
    ]  # fmt: skip
    answer = client.post("/v1/usage", content=orjson.dumps(events), headers=auth(token))
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert doc["accepted"] == 3
    assert [(r["index"], r["reason"]) for r in doc["rejected"]] == [
        (3, "invalid"), (4, "invalid"), (5, "unknown_key"), (6, "unknown_key"), (7, "invalid"),
    ]  # fmt: skip
    assert all(r["error"] for r in doc["rejected"])
    assert doc["detection"] == {"accepted": 3, "rejected": []}
    ndjson = b"\n".join(orjson.dumps({"ts": now, "key_id": key_id, "input_tokens": 5}) for _ in range(4)) + b"\n{oops\n"
    answer = client.post("/v1/usage", content=ndjson, headers={**auth(token), "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 202
    assert answer.json() == {
        "accepted": 4,
        "rejected": [{"index": 4, "reason": "invalid", "error": "line 5 is not valid JSON"}],
        "detection": {"accepted": 4, "rejected": []},
    }
    with app.sessions() as session:
        requests, errors, tokens_in = session.execute(
            select(
                func.sum(models.UsageMinute.requests),
                func.sum(models.UsageMinute.errors),
                func.sum(models.UsageMinute.input_tokens),
            ).where(models.UsageMinute.key_id == key_id)
        ).one()
        assert (requests, errors, tokens_in) == (7, 1, 1200 + 10 + 1 + 20)
        last_used = session.execute(select(models.Key.last_used_at).where(models.Key.id == key_id)).scalar_one()
        assert last_used is not None and abs(last_used.timestamp() - now) < 1
    summary = usage_summary(app.sessions, key_id)
    assert summary["last_hour"] == {"requests": 7, "errors": 1, "input_tokens": 1231, "output_tokens": 900}


def test_usage_bad_bodies(app: App, client: TestClient, token: str) -> None:
    assert client.post("/v1/usage", content=b"", headers=auth(token)).status_code == 400
    assert client.post("/v1/usage", content=b"[1,", headers=auth(token)).status_code == 400
    big = b"[" + b" " * (app.settings.server.max_body_bytes + 1) + b"]"
    answer = client.post("/v1/usage", content=big, headers=auth(token))
    assert answer.status_code == 413 and "max_body_bytes" in answer.json()["error"]
    verify_only = TokenService(app.sessions).create("verify-only", "verify", actor="test")[1]
    wait_for(lambda: client.post("/v1/usage", content=b"[]", headers=auth(verify_only)).status_code == 403, timeout=2)
    with app.sessions() as session:
        assert session.execute(select(func.count()).select_from(models.UsageMinute)).scalar_one() == 0


def test_operations_endpoints(app: App, client: TestClient, token: str) -> None:
    issue(app, "team/ops")
    verify(client, token, "nope")
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"
    text = client.get("/metrics").text
    for name in (
        "keyops_keys", "keyops_rotations_total", "keyops_verify_total", "keyops_alerts_total",
        "keyops_webhook_signature_failures_total", "keyops_job_duration_seconds", "keyops_job_failures_total",
        "keyops_usage_events_total", "keyops_usage_events_rejected_total",
        "keyops_keys_overdue", "keyops_rotations_stuck", "keyops_findings_total",
        "keyops_verify_cache_keys", "keyops_http_requests_total",
    ):  # fmt: skip
        assert f"# TYPE {name} " in text, name
    assert 'keyops_verify_total{code="MALFORMED"} 1' in text
    assert 'keyops_http_requests_total{route="/v1/keys/verify",status="200"} 1' in text
    doc = client.get("/openapi.json").json()
    assert {p for p in doc["paths"] if not p.startswith("/v1/admin/")} == {
        "/v1/keys/verify", "/v1/usage", "/v1/alerts/{source}", "/healthz", "/readyz", "/metrics", "/openapi.json",
        "/v1/ping", "/v1/authz", "/v1/authz/{path}",
    }  # fmt: skip
    assert client.get("/nope").status_code == 404
    assert client.get("/v1/keys/verify").status_code == 405
