"""Secrets quoted in inbound alerts stay out of the inventory and out of what
keyops sends on.

A leak scanner quotes the key it found; an operator pastes a token into an
alert's description. Each alert below arrives through the real HTTP app
(Alertmanager, Grafana and Standard Webhooks), acts on a key, and quotes a
set of real secrets: an issued key's plaintext, a keyops API token, an AWS
secret access key, a Vault token, a webhook secret, and a key glued to its
neighbours. Then every table is read back with SQLAlchemy and the outbox is
delivered to real local HTTP sinks (a Slack-style incoming webhook and a
Standard Webhooks consumer): no plaintext anywhere, while the redaction
marker and the key's id and name are still there for a person to act on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, inspect, select, text
from starlette.testclient import TestClient

from keyops.alerts.standard import sign
from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.domain.redact import KEY_MARK, SECRET_MARK
from keyops.inventory import models
from keyops.lifecycle.tokens import TokenService
from tests.integration.test_notify_delivery import Receiver

SIGNING = "whsec_" + base64.b64encode(b"alert-signing-secret-for-tests!!").decode()
SINK_SECRET = "whsec_" + base64.b64encode(b"outbound-sink-secret-for-tests!!").decode()
AM_BEARER = "am-bearer-" + "x" * 24
GRAFANA_HMAC = "grafana-hmac-secret-0001"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"


@dataclass
class RawSink(Receiver):
    """The notify tests' receiver, also keeping every raw body it was sent."""

    bodies: list[tuple[str, bytes]] = field(default_factory=list)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        self.bodies.append((path, body))
        return super().handle(path, headers, body)


@dataclass
class Secrets:
    """The plaintexts an alert may quote, and the key the alerts act on."""

    leaked_key: str
    leaked_key_id: str
    token: str
    aws_secret: str
    vault: str
    whsec: str

    def all(self) -> dict[str, str]:
        return {
            "issued key": self.leaked_key,
            "issued key's random part": self.leaked_key.rsplit("_", 2)[-2],
            "kopt_ token": self.token,
            "AWS secret access key": self.aws_secret,
            "Vault token": self.vault,
            "whsec_ secret": self.whsec,
        }

    def quoted(self) -> str:
        """A description quoting every secret, the key several ways."""
        k = self.leaked_key
        return (
            f"scanner found {k} in a paste; also https://paste.example/raw?k%3D{k}&x=1, "
            f"{k}_old, x{k}y, token={self.token}, "
            f"aws_access_key_id={AWS_KEY_ID} aws_secret_access_key={self.aws_secret}, "
            f"vault {self.vault}, signing {self.whsec}"
        )


@pytest.fixture
def sink() -> Iterator[RawSink]:
    receiver = RawSink(base64.b64decode(SINK_SECRET[6:]))
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def alert_app(env: dict[str, str], sink: RawSink) -> Iterator[App]:
    env = {
        **env,
        "KEYOPS_ALERTS_STANDARD_ENABLED": "true",
        "KEYOPS_ALERTS_STANDARD_SECRETS": SIGNING,
        "KEYOPS_ALERTS_ALERTMANAGER_ENABLED": "true",
        "KEYOPS_ALERTS_ALERTMANAGER_BEARER_TOKEN": AM_BEARER,
        "KEYOPS_ALERTS_GRAFANA_ENABLED": "true",
        "KEYOPS_ALERTS_GRAFANA_HMAC_SECRET": GRAFANA_HMAC,
        "KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": f"http://127.0.0.1:{sink.port}/hooks",
        "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": SINK_SECRET,
        "KEYOPS_NOTIFY_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{sink.port}/slack",
        "KEYOPS_NOTIFY_TIMEOUT": "2s",
    }
    app = build(load_settings(env=env))
    yield app
    app.close()


def _issue(app: App, name: str) -> tuple[str, str]:
    issued = app.keys.issue(name, owner="team", profile="batch", policy="standard", actor="test")
    return issued.key.id, issued.plaintext


def _secrets(app: App) -> Secrets:
    key_id, plaintext = _issue(app, "team/leaked")
    token = TokenService(app.sessions).create("scanner", "verify", actor="test")[1]
    aws = base64.b64encode(secrets.token_bytes(30)).decode()  # 40 base64 characters
    return Secrets(
        leaked_key=plaintext,
        leaked_key_id=key_id,
        token=token,
        aws_secret=aws,
        vault="hvs." + secrets.token_urlsafe(24),
        whsec="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )


def _alertmanager_body(s: Secrets, key_name: str, labels: dict[str, str] | None = None) -> bytes:
    alert_labels = {
        "alertname": "KeyLeaked",
        "severity": "critical",
        "keyops_key": key_name,
        "evidence": f"{s.leaked_key}_old {s.vault}",
        "aws_secret_access_key": s.aws_secret,  # the label names it; the value alone is just base64
        **(labels or {}),
    }
    return orjson.dumps(
        {
            "version": "4",
            "status": "firing",
            "receiver": "keyops",
            "groupKey": '{}:{alertname="KeyLeaked"}',
            "commonLabels": {"alertname": "KeyLeaked"},
            "alerts": [
                {
                    "status": "firing",
                    "labels": alert_labels,
                    "annotations": {"summary": s.quoted(), "description": f"see {s.token} and {s.whsec}"},
                    "startsAt": "2026-12-03T10:00:00Z",
                    "generatorURL": f"https://prometheus.example/graph?k%3D{s.leaked_key}",
                    "fingerprint": "abc123",
                }
            ],
        }
    )


def _grafana_body(s: Secrets, key_name: str) -> bytes:
    return orjson.dumps(
        {
            "receiver": "keyops",
            "status": "firing",
            "orgId": 1,
            "title": f"[FIRING:1] leaked {s.leaked_key}",
            "message": s.quoted(),
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "GrafanaLeak", "severity": "critical", "key_name": key_name},
                    # no summary: the description becomes the reason
                    "annotations": {"description": s.quoted()},
                    "startsAt": "2026-12-03T10:00:00Z",
                    "generatorURL": f"https://grafana.example/alerting?k%3D{s.leaked_key}",
                    "fingerprint": "def456",
                    "valueString": f"[ var='A' labels={{k={s.leaked_key}}} value=1 ]",
                }
            ],
        }
    )


def _standard_body(s: Secrets, data: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "type": "key.leaked",
            "timestamp": "2026-12-03T10:00:00Z",
            "data": {
                "severity": "critical",
                "action": "suspend",
                "reason": s.quoted(),
                "detector": f"scanner-{s.token}",
                "evidence": {
                    "paste": s.quoted(),
                    s.leaked_key: [s.aws_secret + " " + AWS_KEY_ID, s.vault],
                    "credentials": {"AccessKeyId": AWS_KEY_ID, "SecretAccessKey": s.aws_secret},
                },
                **data,
            },
        }
    )


def _standard_headers(msg_id: str, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": sign(SIGNING, msg_id, stamp, body)}


def _grafana_headers(body: bytes) -> dict[str, str]:
    return {"X-Grafana-Alerting-Signature": hmac.new(GRAFANA_HMAC.encode(), body, hashlib.sha256).hexdigest()}


def _every_row(app: App) -> dict[str, str]:
    """Every table's rows, as one text per table, read straight from the database."""
    engine = create_engine(app.settings.database.url)
    out: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()  # noqa: S608 (names from the schema)
                out[table] = "\n".join(json.dumps([str(v) for v in row]) for row in rows)
    finally:
        engine.dispose()
    return out


def _assert_absent(haystack: str, s: Secrets, where: str) -> None:
    for what, plaintext in s.all().items():
        assert plaintext not in haystack, f"the {what} is in {where}"
    # keyops' own key and token formats: not even a large piece
    assert s.leaked_key[10:30] not in haystack, f"a piece of the issued key is in {where}"
    assert s.token[5:25] not in haystack, f"a piece of the token is in {where}"


def test_secrets_quoted_in_alerts_are_stored_and_sent_redacted(alert_app: App, sink: RawSink) -> None:
    s = _secrets(alert_app)
    targets = {source: _issue(alert_app, f"team/{source}-target")[0] for source in ("am", "grafana", "standard")}
    with TestClient(create_app(alert_app)) as client:
        am = client.post(
            "/v1/alerts/alertmanager",
            content=_alertmanager_body(s, "team/am-target"),
            headers={"Authorization": f"Bearer {AM_BEARER}"},
        )
        grafana_body = _grafana_body(s, "team/grafana-target")
        gf = client.post("/v1/alerts/grafana", content=grafana_body, headers=_grafana_headers(grafana_body))
        standard_body = _standard_body(s, {"key_name": "team/standard-target"})
        signed = _standard_headers("msg-1", standard_body)
        st = client.post("/v1/alerts/standard", content=standard_body, headers=signed)
        answers = [am, gf, st]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert answer.json()["verdict"] == "acted", answer.text
            _assert_absent(answer.text, s, "an alert's HTTP answer")

    with alert_app.sessions() as session:
        keys = {k.id: k for k in session.execute(select(models.Key)).scalars()}
        findings = list(session.execute(select(models.Finding)).scalars())
        inbound = list(session.execute(select(models.InboundAlert)).scalars())
        audit_rows = list(session.execute(select(models.AuditEvent)).scalars())
        events = list(session.execute(select(models.OutboxEvent)).scalars())
    # The alerts did what they should: each target suspended, with a useful reason.
    for key_id in targets.values():
        assert keys[key_id].state == "suspended"
        assert KEY_MARK in keys[key_id].state_reason and SECRET_MARK in keys[key_id].state_reason
        assert "scanner found" in keys[key_id].state_reason
    assert keys[s.leaked_key_id].state == "active"  # only quoted, never named
    assert sorted(str(f.key_id) for f in findings) == sorted(targets.values())
    assert all(KEY_MARK in f.summary for f in findings)
    assert len(inbound) == 3
    assert {e.type for e in events} >= {"case.opened", "key.suspended"}
    assert any(a.action == "alert.received" for a in audit_rows)

    columns = {
        "findings.summary": [f.summary for f in findings],
        "findings.evidence": [orjson.dumps(f.evidence).decode() for f in findings],
        "keys.state_reason": [k.state_reason for k in keys.values()],
        "inbound_alerts.detail": [orjson.dumps(a.detail).decode() for a in inbound],
        "audit_events": [orjson.dumps([a.reason, a.details]).decode() for a in audit_rows],
        "outbox_events.payload": [orjson.dumps(e.payload).decode() for e in events],
    }
    for where, values in columns.items():
        assert values, f"{where} is empty: nothing to search"
        _assert_absent("\n".join(values), s, where)
    # The plaintext must not hide in any other column either.
    for table, rows in _every_row(alert_app).items():
        _assert_absent(rows, s, f"table {table}")

    report = alert_app.notify.deliver_due(worker_id="w1")
    assert report.failed == 0 and report.dead == 0, report.errors
    assert sink.rejected_signatures == 0
    webhook = [e for e in sink.accepted if e["type"] == "case.opened"]
    # three cases opened and three suspensions, to each sink
    assert len(sink.slack) == 6 and len(webhook) == 3, (sink.slack, sink.accepted)
    assert {path for path, _ in sink.bodies} == {"/slack", "/hooks"}
    received = b"\n".join(body for _, body in sink.bodies).decode()
    _assert_absent(received, s, "a body sent to a sink")
    # ... while the alert stays useful: what was removed is marked, and the key is named.
    for key_id in targets.values():
        finding = next(e for e in webhook if e["data"]["key_id"] == key_id)
        assert KEY_MARK in finding["data"]["summary"] and "scanner found" in finding["data"]["summary"]
    assert any(KEY_MARK in line and "*team/am-target*" in line for line in sink.slack), sink.slack


def test_a_leaked_key_named_by_its_plaintext_acts_on_that_key_and_is_not_kept(alert_app: App, sink: RawSink) -> None:
    """Standard Webhooks' ``data.key`` is the leaked material itself: it is
    hashed at once, the key it belongs to is suspended, and the plaintext is
    kept nowhere."""
    s = _secrets(alert_app)
    body = _standard_body(s, {"key": s.leaked_key})
    with TestClient(create_app(alert_app)) as client:
        answer = client.post("/v1/alerts/standard", content=body, headers=_standard_headers("msg-leak", body))
    assert answer.status_code == 200, answer.text
    assert [(k["key_id"], k["action"], k["result"]) for k in answer.json()["keys"]] == [
        (s.leaked_key_id, "suspend", "suspended")
    ]
    with alert_app.sessions() as session:
        key = session.get(models.Key, s.leaked_key_id)
        assert key is not None and key.state == "suspended"
    for table, rows in _every_row(alert_app).items():
        _assert_absent(rows, s, f"table {table}")
    alert_app.notify.deliver_due(worker_id="w1")
    assert sink.bodies, "nothing was sent"
    _assert_absent(b"\n".join(body for _, body in sink.bodies).decode(), s, "a body sent to a sink")


def test_a_key_plaintext_in_an_alertmanager_label_is_redacted_not_looked_up(alert_app: App, sink: RawSink) -> None:
    """Labels are text: a label that quotes a key's plaintext is redacted as it
    is parsed, so it names no key (the reference is recorded as unknown) and
    the plaintext is kept nowhere. Alertmanager and Grafana name keys by name
    or id; the leaked material itself is looked up only where a format carries
    it as such (Standard Webhooks' ``data.key``, GitHub's token reports)."""
    s = _secrets(alert_app)
    body = _alertmanager_body(s, s.leaked_key)
    with TestClient(create_app(alert_app)) as client:
        answer = client.post("/v1/alerts/alertmanager", content=body, headers={"Authorization": f"Bearer {AM_BEARER}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["verdict"] == "no_op" and answer.json()["unknown_keys"] == 1, answer.text
    with alert_app.sessions() as session:
        [row] = session.execute(select(models.InboundAlert)).scalars()
        assert row.detail["unknown_keys"] == [{"kind": "key", "value": KEY_MARK}]
        key = session.get(models.Key, s.leaked_key_id)
        assert key is not None and key.state == "active"
    for table, rows in _every_row(alert_app).items():
        _assert_absent(rows, s, f"table {table}")


def test_a_delivery_id_quoting_a_secret_is_kept_as_a_digest_and_still_deduplicates(
    alert_app: App, sink: RawSink
) -> None:
    """A sender may build its delivery ids from what it found. Such an id is
    stored as its digest: a re-send is still a duplicate, and two ids quoting
    different secrets stay two deliveries."""
    s = _secrets(alert_app)
    other = TokenService(alert_app.sessions).create("other", "verify", actor="test")[1]
    targets = [_issue(alert_app, f"team/target-{i}")[0] for i in range(2)]
    with TestClient(create_app(alert_app)) as client:

        def send(msg_id: str, key_name: str) -> dict[str, Any]:
            body = _standard_body(s, {"key_name": key_name})
            answer = client.post("/v1/alerts/standard", content=body, headers=_standard_headers(msg_id, body))
            assert answer.status_code == 200, answer.text
            _assert_absent(answer.text, s, "an alert's HTTP answer")
            doc: dict[str, Any] = answer.json()
            return doc

        first = send(f"scan-{s.token}", "team/target-0")
        assert first["verdict"] == "acted" and first["delivery_id"].startswith("sha256:")
        assert send(f"scan-{s.token}", "team/target-0")["verdict"] == "duplicate"
        assert send(f"scan-{other}", "team/target-1")["verdict"] == "acted"
    with alert_app.sessions() as session:
        ids = [a.delivery_id for a in session.execute(select(models.InboundAlert)).scalars()]
        states = [session.get(models.Key, key_id).state for key_id in targets]  # type: ignore[union-attr]
    assert len(ids) == len(set(ids)) == 2 and states == ["suspended", "suspended"]
    for table, rows in _every_row(alert_app).items():
        _assert_absent(rows, s, f"table {table}")
        assert other not in rows, f"the second token is in table {table}"
