"""SNS signature versions and certificate fetch failures, and long delivery
ids, with the real receiver, real signed messages and certificates served by
a local HTTPS server (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from keyops.alerts import sns
from keyops.bootstrap import App
from tests.integration.test_alerts_receiver import inbound, issue, make_app, snapshot
from tests.unit.alerts import vendors

NOTIFICATION = {"x-amz-sns-message-type": "Notification"}


def signed(key_name: str, pki: vendors.Pki, version: str, **fields: str) -> bytes:
    doc = vendors.sns_notification(vendors.cloudwatch_alarm(key_name))
    doc.update(fields)
    return json.dumps(vendors.sns_sign(doc, pki.sns_key, version)).encode()


@pytest.fixture
def alert_app(env: dict[str, str], pki: vendors.Pki, vendor_server: vendors.LocalServer) -> Iterator[App]:
    app = make_app(env, pki, vendor_server)
    try:
        yield app
    finally:
        app.close()


# -- SignatureVersion 1 (SHA-1) can be refused ----------------------------------


@pytest.fixture
def v2_only(env: dict[str, str], pki: vendors.Pki, vendor_server: vendors.LocalServer) -> Iterator[App]:
    app = make_app({**env, "KEYOPS_ALERTS_SNS_SIGNATURE_VERSIONS": "2"}, pki, vendor_server)
    try:
        yield app
    finally:
        app.close()


def test_signature_version_1_is_refused_when_only_2_is_accepted(v2_only: App, pki: vendors.Pki) -> None:
    key_id, _ = issue(v2_only)
    before = snapshot(v2_only)
    outcome = v2_only.alerts.receive("sns", NOTIFICATION, signed("payments/prod-llm", pki, "1"))
    assert outcome.status == 401, outcome.body
    assert outcome.body == {
        "error": "signature_version_refused",
        "message": "SignatureVersion 1 is refused by alerts.sns.signature_versions: "
        "set the topic's SignatureVersion attribute to 2",
    }
    assert snapshot(v2_only) == before
    confirm = vendors.sns_sign(vendors.sns_confirmation(), pki.sns_key, "1")
    assert v2_only.alerts.receive("sns", {}, json.dumps(confirm).encode()).status == 401
    assert snapshot(v2_only) == before
    outcome = v2_only.alerts.receive("sns", NOTIFICATION, signed("payments/prod-llm", pki, "2"))
    assert outcome.status == 200, outcome.body
    assert v2_only.keys.show(key_id).state == "suspended"


def test_both_versions_are_accepted_by_default(alert_app: App, pki: vendors.Pki) -> None:
    issue(alert_app, "team/one")
    issue(alert_app, "team/two")
    for name, version in (("team/one", "1"), ("team/two", "2")):
        outcome = alert_app.alerts.receive("sns", NOTIFICATION, signed(name, pki, version))
        assert outcome.status == 200, (version, outcome.body)
        assert alert_app.keys.show(name).state == "suspended"


# -- failed certificate fetches are remembered -------------------------------------


def broken_cert_url(server: vendors.LocalServer, name: str, answer: tuple[int, bytes]) -> str:
    url = f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{name}.pem"
    server.routes[urlsplit(url).path] = answer
    return url


def fetches(server: vendors.LocalServer, url: str) -> int:
    return sum(1 for hit in server.hits if hit == urlsplit(url).path)


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [((500, b"oops"), 502, "fetch_failed"), ((200, b"not a certificate"), 401, "bad_certificate")],
)
def test_a_flood_naming_a_failing_certificate_fetches_it_once(
    alert_app: App,
    pki: vendors.Pki,
    vendor_server: vendors.LocalServer,
    answer: tuple[int, bytes],
    status: int,
    code: str,
) -> None:
    issue(alert_app)
    url = broken_cert_url(vendor_server, f"flood-{answer[0]}-{id(alert_app)}", answer)
    before = snapshot(alert_app)
    outcomes = [
        alert_app.alerts.receive("sns", NOTIFICATION, signed("payments/prod-llm", pki, "2", SigningCertURL=url))
        for _ in range(25)
    ]
    assert fetches(vendor_server, url) == 1
    assert {(o.status, o.body["error"]) for o in outcomes} == {(status, code)}
    assert "not fetched again for" not in outcomes[0].body["message"]
    assert all(re.search(r"\(not fetched again for (9|10)s\)$", o.body["message"]) for o in outcomes[1:]), outcomes[1]
    assert snapshot(alert_app) == before
    # the good certificate is not held back by another URL's failures
    outcome = alert_app.alerts.receive("sns", NOTIFICATION, signed("payments/prod-llm", pki, "2"))
    assert outcome.status == 200, outcome.body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_failure_window_doubles_and_ends_when_the_certificate_comes_back(
    pki: vendors.Pki, vendor_server: vendors.LocalServer
) -> None:
    clock = Clock()
    verifier = sns.SnsVerifier(vendors.RoutingFetcher(vendor_server, pki), clock=clock)
    url = broken_cert_url(vendor_server, f"backoff-{id(clock)}", (503, b""))

    def attempt() -> int:
        body = signed("payments/prod-llm", pki, "2", SigningCertURL=url)
        try:
            verifier.authenticate({}, body, topic_arns=[vendors.TOPIC], now=datetime.now(UTC), tolerance=3600)
        except sns.AlertRejected as exc:
            return exc.status
        return 200

    assert attempt() == 502 and fetches(vendor_server, url) == 1
    clock.now += 9.9
    assert attempt() == 502 and fetches(vendor_server, url) == 1
    clock.now += 0.2  # the first window (10 s) is over
    assert attempt() == 502 and fetches(vendor_server, url) == 2
    clock.now += 19.8  # the second failure doubled it to 20 s
    assert attempt() == 502 and fetches(vendor_server, url) == 2
    clock.now += 0.3
    assert attempt() == 502 and fetches(vendor_server, url) == 3
    vendor_server.routes[urlsplit(url).path] = (200, pki.sns_cert_pem)
    assert attempt() == 502 and fetches(vendor_server, url) == 3  # still inside the 40 s window
    clock.now += 40.1
    assert attempt() == 200 and fetches(vendor_server, url) == 4
    clock.now += 3600
    assert attempt() == 200 and fetches(vendor_server, url) == 4  # cached now


def test_the_window_is_capped(pki: vendors.Pki, vendor_server: vendors.LocalServer) -> None:
    clock = Clock()
    verifier = sns.SnsVerifier(vendors.RoutingFetcher(vendor_server, pki), clock=clock)
    url = broken_cert_url(vendor_server, f"cap-{id(clock)}", (500, b""))
    for _ in range(12):
        with pytest.raises(sns.AlertRejected):
            verifier.certificate(url)
        clock.now += sns.FAILURE_BACKOFF_MAX + 0.1
    assert fetches(vendor_server, url) == 12  # never held back longer than the cap


# -- long delivery ids ------------------------------------------------------------


def hashed(delivery_id: str) -> str:
    return "sha256:" + hashlib.sha256(delivery_id.encode()).hexdigest()


def test_long_standard_ids_sharing_a_prefix_are_different_deliveries(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    prefix = "msg_" + "a" * 252
    first_id, second_id = prefix + "-first-delivery", prefix + "-second-delivery"
    first = vendors.standard_delivery({"key_id": key_id, "action": "notify", "reason": "one"}, msg_id=first_id)
    second = vendors.standard_delivery({"key_id": key_id, "action": "notify", "reason": "two"}, msg_id=second_id)
    for headers, body in (first, second):
        outcome = alert_app.alerts.receive("standard", headers, body)
        assert outcome.status == 200 and outcome.body["verdict"] == "acted", outcome.body
    rows = inbound(alert_app)
    assert sorted(r.delivery_id for r in rows) == sorted([hashed(first_id), hashed(second_id)])
    assert [r.verdict for r in rows] == ["acted", "acted"]
    before = snapshot(alert_app)
    again = alert_app.alerts.receive("standard", *first)
    assert again.status == 200 and again.body["verdict"] == "duplicate"
    assert again.body["delivery_id"] == hashed(first_id)
    assert snapshot(alert_app) == before
    short = vendors.standard_delivery({"key_id": key_id, "action": "notify"}, msg_id="msg_" + "b" * 252)
    assert alert_app.alerts.receive("standard", *short).status == 200
    assert inbound(alert_app)[-1].delivery_id == "msg_" + "b" * 252  # ids that fit are stored as they are


def test_an_overlong_standard_id_is_refused(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    before = snapshot(alert_app)
    headers, body = vendors.standard_delivery({"key_id": key_id, "action": "notify"}, msg_id="m" * 1025)
    outcome = alert_app.alerts.receive("standard", headers, body)
    assert (outcome.status, outcome.body["error"]) == (400, "bad_id")
    assert snapshot(alert_app) == before


def test_long_sns_message_ids_sharing_a_prefix_are_different_deliveries(alert_app: App, pki: vendors.Pki) -> None:
    issue(alert_app)
    prefix = "7f3c" * 64  # 256 characters
    ids = [prefix + "-a", prefix + "-b"]
    bodies = [signed("payments/prod-llm", pki, "2", MessageId=message_id) for message_id in ids]
    for body in bodies:
        outcome = alert_app.alerts.receive("sns", NOTIFICATION, body)
        assert outcome.status == 200 and outcome.body["verdict"] == "acted", outcome.body
    assert sorted(r.delivery_id for r in inbound(alert_app)) == sorted(hashed(i) for i in ids)
    before = snapshot(alert_app)
    again = alert_app.alerts.receive("sns", NOTIFICATION, bodies[1])
    assert again.status == 200 and again.body["verdict"] == "duplicate"
    assert snapshot(alert_app) == before
