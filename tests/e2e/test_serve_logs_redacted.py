"""What ``keyops serve`` prints never holds a secret, whatever callers send.

A real daemon, in each log format, at DEBUG with SQL echo on (so statements
and their parameters are logged too), is sent what puts secrets in front of
its logging: an alert quoting a key, a token, a Vault token and an AWS
secret; alert deliveries refused with a key as their credentials; verify
calls carrying a key in a malformed Authorization header or a malformed body;
usage lines quoting a key; a request line and a header HTTP itself refuses.
Its captured stdout and stderr are then searched for every plaintext.
"""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from keyops.alerts.standard import sign
from keyops.bootstrap import App
from keyops.domain.redact import KEY_MARK
from keyops.lifecycle.tokens import TokenService
from tests.e2e.serving import Served
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

BEARER = "am-bearer-for-the-log-test-000001"
SIGNING = "whsec_" + base64.b64encode(b"log-test-signing-secret-00000001").decode()


def _raw(port: int, request: bytes) -> bytes:
    """Send bytes no HTTP client would, and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_daemon_logs_hold_no_secret(log_format: str, servers: Callable[..., Served], inventory: App) -> None:
    leaked = inventory.keys.issue("team/leaked", owner="t", profile="batch", policy="standard", actor="t").plaintext
    inventory.keys.issue("team/target", owner="t", profile="batch", policy="standard", actor="t")
    token = TokenService(inventory.sessions).create("gateway", "verify,usage", actor="t")[1]
    aws = base64.b64encode(secrets.token_bytes(30)).decode()
    vault = "hvs." + secrets.token_urlsafe(24)
    plaintexts = {"issued key": leaked, "random part of the key": leaked.rsplit("_", 2)[-2], "AWS secret": aws}
    plaintexts |= {"Vault token": vault, "verify token": token}
    quote = f"found {leaked} and ?k%3D{leaked}&x, {leaked}_old; aws_secret_access_key={aws}; {vault}; {token}"
    server = servers(
        KEYOPS_LOG_FORMAT=log_format,
        KEYOPS_LOG_LEVEL="DEBUG",
        KEYOPS_DATABASE_ECHO="true",
        KEYOPS_ALERTS_ALERTMANAGER_ENABLED="true",
        KEYOPS_ALERTS_ALERTMANAGER_BEARER_TOKEN=BEARER,
        KEYOPS_ALERTS_STANDARD_ENABLED="true",
        KEYOPS_ALERTS_STANDARD_SECRETS=SIGNING,
    )
    http = server.http
    answers: list[httpx.Response] = []

    # An alert quoting every secret, acted on (the target is suspended).
    alert = orjson.dumps(
        {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "labels": {"alertname": "Leak", "severity": "critical", "keyops_key": "team/target", "k": leaked},
                    "annotations": {"summary": quote},
                    "generatorURL": f"https://prom.example/?k%3D{leaked}",
                }
            ],
        }
    )
    acted = http.post("/v1/alerts/alertmanager", content=alert, headers={"Authorization": f"Bearer {BEARER}"})
    assert acted.status_code == 200 and acted.json()["verdict"] == "acted", acted.text
    # Refused alerts: a key as the credentials, a bad signature over a body quoting secrets,
    # a key as the delivery id.
    answers.append(http.post("/v1/alerts/alertmanager", content=alert, headers={"Authorization": f"Bearer {leaked}"}))
    body = orjson.dumps({"type": "x", "data": {"key": leaked, "reason": quote, "action": "suspend"}})
    stamp = str(int(time.time()))
    forged = {"webhook-id": "m1", "webhook-timestamp": stamp, "webhook-signature": f"v1,{leaked}"}
    answers.append(http.post("/v1/alerts/standard", content=body, headers=forged))
    bad_id = {
        "webhook-id": f"{leaked} x",
        "webhook-timestamp": stamp,
        "webhook-signature": sign(SIGNING, "m", stamp, body),
    }
    answers.append(http.post("/v1/alerts/standard", content=body, headers=bad_id))
    answers.append(http.post("/v1/alerts/standard", content=b"{" + leaked.encode(), headers=forged))
    # A source named by the key: refused as unknown, and the name is not logged (a cut
    # piece of a key matches no pattern, so it must not be printed at all).
    unknown = http.post(f"/v1/alerts/{leaked}", content=alert, headers={"Authorization": f"Bearer {BEARER}"})
    assert unknown.status_code == 404, unknown.text
    # A signed delivery whose id quotes a token: acted on, the id kept only as a digest.
    quoting_id = f"scan-{token}"
    signed = {
        "webhook-id": quoting_id,
        "webhook-timestamp": stamp,
        "webhook-signature": sign(SIGNING, quoting_id, stamp, body),
    }
    answers.append(http.post("/v1/alerts/standard", content=body, headers=signed))

    # Verify with the key where the token belongs, and malformed bodies quoting it.
    for auth in (leaked, f"Bearer {leaked}", f"Basic {leaked}", f"Bearer {token} {leaked}"):
        answers.append(http.post("/v1/keys/verify", json={"key": leaked}, headers={"Authorization": auth}))
    good = {"Authorization": f"Bearer {token}"}
    for bad_body in (b'{"key": "' + leaked.encode(), orjson.dumps({"key": [leaked]}), orjson.dumps({leaked: 1})):
        answers.append(http.post("/v1/keys/verify", content=bad_body, headers=good))
    answers.append(http.post("/v1/keys/verify", json={"key": leaked + "_old"}, headers=good))

    # Usage lines quoting the key, valid and not.
    lines = [
        orjson.dumps({"key": leaked, "ts": time.time(), "prompt_prefix": quote, "user_agent": leaked}),
        b'{"key": "' + leaked.encode() + b'", "ts": ',
        orjson.dumps({"key": f"{leaked}_old", "ts": "yesterday"}),
    ]
    answers.append(http.post("/v1/usage", content=b"\n".join(lines), headers=good))
    # An unknown endpoint named by the key, and requests HTTP itself refuses.
    # (its 404 names the path it was asked for: only to the caller who sent it)
    assert http.get(f"/v1/keys/{leaked}", headers=good).status_code == 404
    refused = [
        _raw(server.port, f"GET /?k={leaked} HTTP/1.1\r\nHost: x\r\nX-Key: {leaked}\x01\r\n\r\n".encode()),
        _raw(server.port, f"{leaked} / HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
        _raw(server.port, f"GET /v1/keys/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {leaked}\r\n"
             f"Content-Length: nope{leaked}\r\n\r\n".encode()),
    ]  # fmt: skip
    assert all(answer.startswith(b"HTTP/1.1 400") for answer in refused), refused

    assert {a.status_code for a in answers} <= {200, 202, 400, 401, 403, 404}, [
        (a.status_code, a.text) for a in answers
    ]
    assert [a.status_code for a in answers[:4]] == [401, 401, 400, 401]
    # Wait for what the requests logged (the refusals, the SQL of the acted alert).
    wait_for(lambda: "alert delivery refused" in server.logs(), timeout=10, what="the refusal to be logged")
    assert server.terminate() < 10
    logs = server.logs()
    assert "INSERT INTO inbound_alerts" in logs and KEY_MARK in logs, logs[-3000:]
    if log_format == "json":
        assert logs.lstrip().startswith("{")
    for what, plaintext in plaintexts.items():
        assert plaintext not in logs, f"the {what} is in the daemon's output"
    assert leaked[10:30] not in logs, "a piece of the issued key is in the daemon's output"
    for answer in answers:
        assert leaked not in answer.text, f"an answer quotes the key: {answer.status_code} {answer.text[:300]}"
