"""Fuzzing ``receive()`` for every source: whatever arrives, the answer is a
deliberate status (never an exception, which the HTTP layer would turn into
a 500). Deliveries are also fuzzed *past* authentication (correctly signed
random payloads), where the parsers meet hostile JSON."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keyops.alerts.receiver import AlertOutcome, AlertReceiver
from keyops.bootstrap import App, build
from keyops.config import load_settings
from tests.integration.test_alerts_receiver import alert_env
from tests.unit.alerts import vendors

ALLOWED = {200, 400, 401, 403, 404, 413}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
SOURCES = ["standard", "alertmanager", "grafana", "sns", "github"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["\x00", "a\x00b", "fuzz/key-0\x00", "\ud7ff\ufffd"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


class MemoryFetcher:
    """A real Fetcher over fixed documents (the HTTPS path is covered in
    test_alerts_receiver); here speed matters."""

    def __init__(self, pki: vendors.Pki) -> None:
        self.docs = {vendors.CERT_URL: pki.sns_cert_pem, vendors.GITHUB_META: vendors.github_meta(pki)}

    def __call__(self, url: str) -> bytes:
        if url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"):
            return b"<ok/>"
        return self.docs[url]


@pytest.fixture
def fuzz_app(env: dict[str, str], pki: vendors.Pki) -> Iterator[tuple[App, list[str]]]:
    env = alert_env(env)  # SQLite and PostgreSQL: PostgreSQL refuses NUL in text and JSON
    app = build(load_settings(env=env))
    app.alerts.close()
    app.alerts = AlertReceiver(
        app.settings.alerts,
        app.sessions,
        app.keys,
        rotator=lambda: app.rotations,
        fetcher=MemoryFetcher(pki),
        background=False,
    )
    refs: list[str] = []
    for i in range(2):
        issued = app.keys.issue(f"fuzz/key-{i}", owner="fuzz", profile="interactive", policy="standard", actor="t")
        refs += [issued.key.name, issued.key.id, issued.plaintext]
    try:
        yield app, refs
    finally:
        app.close()


def check(outcome: AlertOutcome) -> None:
    assert outcome.status in ALLOWED, (outcome.status, outcome.body)
    event(f"status {outcome.status}")
    outcome.json()  # the body always serialises


@FUZZ
@given(
    source=st.sampled_from([*SOURCES, "nope", ""]),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "Authorization",
                "X-Grafana-Alerting-Signature",
                "X-Grafana-Alerting-Timestamp",
                "Github-Public-Key-Identifier",
                "Github-Public-Key-Signature",
                "x-amz-sns-message-type",
                "x-other",
            ]
        ),
        st.text(max_size=40),
        max_size=5,
    ),
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_unsigned_junk(fuzz_app: tuple[App, list[str]], source: str, headers: dict[str, str], body: bytes) -> None:
    check(fuzz_app[0].alerts.receive(source, headers, body))


def ref_or_junk(refs: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(refs) | json_values


@FUZZ
@given(data=st.data())
def test_signed_standard(fuzz_app: tuple[App, list[str]], data: st.DataObject) -> None:
    app, refs = fuzz_app
    payload = data.draw(
        st.dictionaries(
            st.sampled_from(
                ["key", "key_id", "key_name", "severity", "action", "reason", "status", "kind", "evidence"]
            ),
            ref_or_junk(refs) | st.sampled_from(["suspend", "revoke", "rotate_now", "critical", "resolved"]),
            max_size=6,
        )
    )
    doc = data.draw(st.sampled_from(["object", "raw"]))
    when = datetime.now(UTC) + timedelta(seconds=data.draw(st.integers(-600, 600)))
    headers, body = vendors.standard_delivery(payload, when=when)
    if doc == "raw":
        body = json.dumps(data.draw(json_values)).encode()
        key = base64.b64decode(vendors.STANDARD_SECRET[6:])
        mac = hmac.new(key, f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body, hashlib.sha256)
        headers["webhook-signature"] = "v1," + base64.b64encode(mac.digest()).decode()
    check(app.alerts.receive("standard", headers, body))


@FUZZ
@given(data=st.data())
def test_authenticated_alertmanager_and_grafana(fuzz_app: tuple[App, list[str]], data: st.DataObject) -> None:
    app, refs = fuzz_app
    group = vendors.alert_group(
        data.draw(st.sampled_from(refs)), status=data.draw(st.sampled_from(["firing", "resolved"]))
    )
    alert = group["alerts"][0]
    for name in data.draw(
        st.lists(st.sampled_from(["labels", "annotations", "status", "startsAt", "fingerprint"]), max_size=3)
    ):
        alert[name] = data.draw(json_values)
    if data.draw(st.booleans()):
        group[data.draw(st.sampled_from(["alerts", "commonLabels", "version", "status"]))] = data.draw(json_values)
    body = json.dumps(group).encode()
    if data.draw(st.booleans()):
        check(app.alerts.receive("alertmanager", {"Authorization": f"Bearer {vendors.AM_TOKEN}"}, body))
    else:
        check(app.alerts.receive("grafana", vendors.grafana_headers(body), body))


@FUZZ
@given(data=st.data())
def test_signed_sns(fuzz_app: tuple[App, list[str]], data: st.DataObject, pki: vendors.Pki) -> None:
    app, refs = fuzz_app
    kind = data.draw(st.sampled_from(["cloudwatch", "guardduty", "text", "json", "confirm"]))
    message: Any
    if kind == "cloudwatch":
        message = vendors.cloudwatch_alarm(data.draw(st.sampled_from(refs)))
        for name in data.draw(st.lists(st.sampled_from(["Trigger", "NewStateValue", "AlarmDescription"]), max_size=2)):
            message[name] = data.draw(json_values)
    elif kind == "guardduty":
        message = vendors.guardduty_finding("AKIAIOSFODNN7EXAMPLE")
        message["detail"][data.draw(st.sampled_from(["resource", "severity", "title", "id"]))] = data.draw(json_values)
    elif kind == "text":
        message = data.draw(st.text(max_size=50))
    else:
        message = json.dumps(data.draw(json_values))
    doc = vendors.sns_confirmation() if kind == "confirm" else vendors.sns_notification(message)
    if data.draw(st.booleans()):
        doc[data.draw(st.sampled_from(["Subject", "MessageId", "Timestamp", "TopicArn", "SubscribeURL"]))] = data.draw(
            st.text(max_size=30)
        )
    vendors.sns_sign(doc, pki.sns_key, data.draw(st.sampled_from(["1", "2"])))
    if data.draw(st.booleans()):
        doc[data.draw(st.sampled_from(["SignatureVersion", "SigningCertURL", "Signature", "Type"]))] = data.draw(
            json_values
        )
    check(app.alerts.receive("sns", {}, json.dumps(doc).encode()))


@FUZZ
@given(data=st.data())
def test_signed_github(fuzz_app: tuple[App, list[str]], data: st.DataObject, pki: vendors.Pki) -> None:
    app, refs = fuzz_app
    tokens = data.draw(st.lists(st.sampled_from(refs) | st.text(max_size=60), min_size=0, max_size=3))
    headers, body = vendors.github_delivery(tokens, pki.github_key)
    if data.draw(st.booleans()):
        body = json.dumps(data.draw(json_values)).encode()
        headers["Github-Public-Key-Signature"] = vendors.github_sign(body, pki.github_key)
    check(app.alerts.receive("github", headers, body))
