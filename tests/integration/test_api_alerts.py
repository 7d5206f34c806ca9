"""``POST /v1/alerts/{source}`` over HTTP: a signed Standard Webhooks delivery
suspends the key it names, and verify sees it; a bad signature is refused and
counted; a replay is refused."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from keyops.alerts.standard import sign
from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.lifecycle.tokens import TokenService
from tests.support.databases import sqlite_url
from tests.support.waiting import wait_for

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def alert_app(base_env: dict[str, str], tmp_path: Path) -> Iterator[App]:
    env = {
        **base_env,
        "KEYOPS_DATABASE_URL": sqlite_url(tmp_path),
        "KEYOPS_ALERTS_STANDARD_ENABLED": "true",
        "KEYOPS_ALERTS_STANDARD_SECRETS": SECRET,
    }
    app = build(load_settings(env=env))
    yield app
    app.close()


def _headers(msg_id: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": sign(secret, msg_id, stamp, body)}


def test_signed_alert_suspends_and_verify_follows(alert_app: App) -> None:
    key = alert_app.keys.issue("team/alerted", owner="t", profile="batch", policy="standard", actor="t").plaintext
    token = TokenService(alert_app.sessions).create("gw", "verify", actor="t")[1]
    body = orjson.dumps(
        {
            "type": "key.anomaly",
            "timestamp": "2026-11-26T21:00:00Z",
            "data": {"key_name": "team/alerted", "severity": "critical", "action": "suspend", "reason": "burst"},
        }
    )
    with TestClient(create_app(alert_app)) as client:
        forged = client.post("/v1/alerts/standard", content=body, headers=_headers("msg-0", body, "whsec_" + "A" * 44))
        assert forged.status_code == 401
        answer = client.post("/v1/alerts/standard", content=body, headers=_headers("msg-1", body))
        assert answer.status_code == 200, answer.text
        assert answer.json()["keys"][0]["action"] == "suspend"
        replay = client.post("/v1/alerts/standard", content=body, headers=_headers("msg-1", body))
        assert replay.status_code == 200 and replay.json()["verdict"] == "duplicate"
        assert client.post("/v1/alerts/nope", content=body).status_code == 404

        def code() -> str:
            doc = client.post("/v1/keys/verify", json={"key": key}, headers={"Authorization": f"Bearer {token}"})
            return str(doc.json()["code"])

        wait_for(lambda: code() == "SUSPENDED", timeout=2, what="verify answering SUSPENDED")
        metrics = client.get("/metrics").text
    assert 'keyops_webhook_signature_failures_total{source="standard"} 1' in metrics
    assert 'keyops_alerts_total{source="standard",verdict="acted"} 1' in metrics
