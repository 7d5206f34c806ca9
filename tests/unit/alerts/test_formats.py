"""Each inbound format on its own: authenticity first, then parsing (no database)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyops.alerts import alertmanager, github, grafana, sns, standard
from keyops.alerts.base import AlertRejected, basic_or_bearer_ok, parse_iso
from keyops.domain import keyformat
from tests.unit.alerts import vendors

NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Deliveries are stamped with the real clock; NOW must be taken per test,
    or a long test session makes every signed timestamp look stale."""
    global NOW
    NOW = datetime.now(UTC)


def rejected(fn, *args, **kwargs) -> AlertRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(AlertRejected) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> vendors.Pki:
    return vendors.make_pki(Path(tmp_path_factory.mktemp("pki")))


class DictFetcher:
    """A real Fetcher over a dict of URL -> bytes, counting calls."""

    def __init__(self, docs: dict[str, bytes]) -> None:
        self.docs = docs
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.docs:
            raise AlertRejected(502, "fetch_failed", "not found")
        return self.docs[url]


# -- Standard Webhooks ------------------------------------------------------


def test_standard_valid_delivery_with_several_signatures() -> None:
    headers, body = vendors.standard_delivery({"key_name": "payments/prod-llm", "severity": "critical"})
    msg_id, sent = standard.authenticate(headers, body, secrets=[vendors.STANDARD_SECRET], now=NOW, tolerance=300)
    assert msg_id == headers["webhook-id"]
    delivery = standard.parse(body, msg_id=msg_id, sent=sent)
    [signal] = delivery.signals
    assert signal.keys[0].kind == "name" and signal.keys[0].value == "payments/prod-llm"
    assert signal.severity == "critical" and signal.type == "key.anomaly"


def test_standard_matches_the_specs_own_signing_example() -> None:
    # The example in the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert standard.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_missing_header(missing: str) -> None:
    headers, body = vendors.standard_delivery({"key_name": "a/b"})
    del headers[missing]
    exc = rejected(standard.authenticate, headers, body, secrets=[vendors.STANDARD_SECRET], now=NOW, tolerance=300)
    assert exc.status == 401 and exc.code == "missing_header"


def test_standard_wrong_secret_and_tampered_body() -> None:
    headers, body = vendors.standard_delivery({"key_name": "a/b"})
    other = "whsec_" + base64.b64encode(b"another-secret-of-enough-length!").decode()
    assert rejected(standard.authenticate, headers, body, secrets=[other], now=NOW, tolerance=300).status == 401
    tampered = body.replace(b"a/b", b"a/c")
    exc = rejected(standard.authenticate, headers, tampered, secrets=[vendors.STANDARD_SECRET], now=NOW, tolerance=300)
    assert exc.code == "bad_signature"


@pytest.mark.parametrize("offset", [-3600, 3600])
def test_standard_stale_or_future_timestamp(offset: int) -> None:
    headers, body = vendors.standard_delivery({"key_name": "a/b"}, when=NOW + timedelta(seconds=offset))
    exc = rejected(standard.authenticate, headers, body, secrets=[vendors.STANDARD_SECRET], now=NOW, tolerance=300)
    assert exc.code == "stale_timestamp" and exc.status == 401


def test_standard_leaked_key_is_hashed_at_once() -> None:
    leaked = keyformat.generate("kops_test").plaintext
    headers, body = vendors.standard_delivery({"key": leaked, "action": "rotate_now"})
    msg_id, sent = standard.authenticate(headers, body, secrets=[vendors.STANDARD_SECRET], now=NOW, tolerance=300)
    delivery = standard.parse(body, msg_id=msg_id, sent=sent)
    assert delivery.signals[0].keys[0].kind == "token_hash"
    assert delivery.signals[0].keys[0].value == keyformat.hash_key(leaked)
    assert keyformat.secret_part(leaked) not in repr(delivery)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": "x"}', b'{"data": {"severity": "high"}}'])
def test_standard_bad_payloads(body: bytes) -> None:
    assert rejected(standard.parse, body, msg_id="m", sent=NOW).status == 400


# -- Alertmanager -----------------------------------------------------------


def test_alertmanager_credentials() -> None:
    good = {"Authorization": f"Bearer {vendors.AM_TOKEN}"}
    alertmanager.authenticate(good, bearer=vendors.AM_TOKEN, username="", password="")
    basic = {"authorization": "Basic " + base64.b64encode(b"am:pw-of-some-length").decode()}
    alertmanager.authenticate(basic, bearer="", username="am", password="pw-of-some-length")
    for bad in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic !!!"}, {"Authorization": "Bearer"}):
        assert (
            rejected(alertmanager.authenticate, bad, bearer=vendors.AM_TOKEN, username="am", password="x").status == 401
        )
    assert not basic_or_bearer_ok({"Authorization": "Bearer x"}, bearer="", username="", password="")


def test_alertmanager_firing_and_resolved() -> None:
    body = json.dumps(vendors.alert_group("payments/prod-llm")).encode()
    [signal] = alertmanager.parse(body, key_labels=["keyops_key", "key_id"]).signals
    assert (signal.status, signal.severity, signal.type) == ("firing", "critical", "KeyopsVolumeAnomaly")
    assert signal.keys[0].value == "payments/prod-llm"
    resolved = json.dumps(vendors.alert_group("payments/prod-llm", status="resolved")).encode()
    assert alertmanager.parse(resolved, key_labels=["keyops_key"]).signals[0].status == "resolved"
    assert (
        rejected(alertmanager.parse, json.dumps(vendors.alert_group("x", version="3")).encode(), key_labels=[]).status
        == 400
    )


# -- Grafana ----------------------------------------------------------------


def grafana_auth(headers: dict[str, str], body: bytes, **overrides: object) -> tuple[str, datetime | None]:
    kwargs: dict[str, object] = {
        "hmac_secret": vendors.GRAFANA_SECRET,
        "hmac_header": "X-Grafana-Alerting-Signature",
        "timestamp_header": "X-Grafana-Alerting-Timestamp",
        "bearer": "",
        "username": "",
        "password": "",
        "now": NOW,
        "tolerance": 300.0,
    }
    kwargs.update(overrides)
    return grafana.authenticate(headers, body, **kwargs)  # type: ignore[arg-type]


def test_grafana_signed_with_timestamp() -> None:
    body = vendors.grafana_body("payments/prod-llm")
    delivery_id, sent = grafana_auth(vendors.grafana_headers(body), body)
    assert sent is not None and delivery_id.startswith("sha256:")
    [signal] = grafana.parse(body, delivery_id=delivery_id, sent=sent, key_labels=["keyops_key"]).signals
    assert signal.keys[0].value == "payments/prod-llm"


def test_grafana_body_only_signature_without_timestamp_header() -> None:
    body = vendors.grafana_body("a/b")
    import hashlib
    import hmac

    headers = {"x-grafana-alerting-signature": hmac.new(b"s" * 20, body, hashlib.sha256).hexdigest()}
    grafana_auth(headers, body, hmac_secret="s" * 20, timestamp_header="")


def test_grafana_refusals() -> None:
    body = vendors.grafana_body("a/b")
    headers = vendors.grafana_headers(body)
    assert rejected(grafana_auth, headers, body + b" ").code == "bad_signature"
    stale = vendors.grafana_headers(body, when=NOW - timedelta(hours=1))
    assert rejected(grafana_auth, stale, body).code == "stale_timestamp"
    no_ts = {"X-Grafana-Alerting-Signature": headers["X-Grafana-Alerting-Signature"]}
    assert rejected(grafana_auth, no_ts, body).code == "missing_header"
    assert rejected(grafana_auth, headers, body, bearer="tok-of-enough-length").code == "bad_credentials"


# -- SNS --------------------------------------------------------------------


@pytest.fixture
def sns_verifier(pki: vendors.Pki) -> tuple[sns.SnsVerifier, DictFetcher]:
    fetcher = DictFetcher({vendors.CERT_URL: pki.sns_cert_pem})
    return sns.SnsVerifier(fetcher), fetcher


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signature_versions(
    pki: vendors.Pki, sns_verifier: tuple[sns.SnsVerifier, DictFetcher], version: str
) -> None:
    verifier, fetcher = sns_verifier
    doc = vendors.sns_sign(
        vendors.sns_notification(vendors.cloudwatch_alarm("payments/prod-llm")), pki.sns_key, version
    )
    body = json.dumps(doc).encode()
    checked = verifier.authenticate(
        {"x-amz-sns-message-type": "Notification"}, body, topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600
    )
    [signal] = sns.parse(checked, key_dimensions=["KeyName"]).signals
    assert (signal.kind, signal.status, signal.severity) == ("cloudwatch", "firing", "critical")
    assert signal.keys[0].value == "payments/prod-llm"
    # the certificate is cached: a second delivery does not fetch it again
    verifier.authenticate({}, body, topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600)
    assert fetcher.calls == [vendors.CERT_URL]


def test_sns_without_subject_and_guardduty(pki: vendors.Pki, sns_verifier: tuple[sns.SnsVerifier, DictFetcher]) -> None:
    verifier, _ = sns_verifier
    doc = vendors.sns_sign(
        vendors.sns_notification(vendors.guardduty_finding("AKIAIOSFODNN7EXAMPLE"), subject=None), pki.sns_key
    )
    checked = verifier.authenticate({}, json.dumps(doc).encode(), topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600)
    [signal] = sns.parse(checked, key_dimensions=[]).signals
    assert signal.kind == "guardduty" and signal.severity == "high"
    assert signal.keys[0].kind == "access_key_id" and signal.keys[0].value == "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
        "https://s3.amazonaws.com/cert.pem",
    ],
)
def test_sns_cert_url_host_is_validated_before_any_fetch(
    pki: vendors.Pki, sns_verifier: tuple[sns.SnsVerifier, DictFetcher], url: str
) -> None:
    verifier, fetcher = sns_verifier
    doc = vendors.sns_notification("hello")
    doc["SigningCertURL"] = url
    body = json.dumps(vendors.sns_sign(doc, pki.sns_key)).encode()
    exc = rejected(verifier.authenticate, {}, body, topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600)
    assert exc.status == 401 and fetcher.calls == []


def test_sns_accepts_china_regions() -> None:
    assert sns.validate_aws_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", "u", path_suffix=".pem")


def test_sns_refusals(pki: vendors.Pki, sns_verifier: tuple[sns.SnsVerifier, DictFetcher]) -> None:
    verifier, fetcher = sns_verifier
    forged = json.dumps(vendors.sns_sign(vendors.sns_notification("x"), pki.other_key)).encode()
    assert (
        rejected(verifier.authenticate, {}, forged, topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600).code
        == "bad_signature"
    )
    other_topic = vendors.sns_notification("x")
    other_topic["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:other"
    body = json.dumps(vendors.sns_sign(other_topic, pki.sns_key)).encode()
    calls = len(fetcher.calls)
    assert rejected(verifier.authenticate, {}, body, topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600).status == 403
    assert len(fetcher.calls) == calls
    old = json.dumps(
        vendors.sns_sign(vendors.sns_notification("x", when=NOW - timedelta(hours=2)), pki.sns_key)
    ).encode()
    assert (
        rejected(verifier.authenticate, {}, old, topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600).code
        == "stale_timestamp"
    )
    mismatch = json.dumps(vendors.sns_sign(vendors.sns_notification("x"), pki.sns_key)).encode()
    headers = {"x-amz-sns-message-type": "SubscriptionConfirmation"}
    assert (
        rejected(verifier.authenticate, headers, mismatch, topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600).status
        == 400
    )
    edited = json.loads(mismatch)
    edited["Message"] = "changed"
    assert (
        rejected(
            verifier.authenticate, {}, json.dumps(edited).encode(), topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600
        ).status
        == 401
    )


def test_sns_subscription_confirmation(pki: vendors.Pki, sns_verifier: tuple[sns.SnsVerifier, DictFetcher]) -> None:
    verifier, _ = sns_verifier
    doc = vendors.sns_sign(vendors.sns_confirmation(), pki.sns_key)
    checked = verifier.authenticate({}, json.dumps(doc).encode(), topic_arns=[vendors.TOPIC], now=NOW, tolerance=3600)
    delivery = sns.parse(checked, key_dimensions=[])
    assert delivery.confirm_url == doc["SubscribeURL"]
    evil = dict(checked, SubscribeURL="https://attacker.example/?Action=ConfirmSubscription")
    assert rejected(sns.parse, evil, key_dimensions=[]).status == 401


# -- GitHub -----------------------------------------------------------------


def test_github_partner_alert(pki: vendors.Pki) -> None:
    fetcher = DictFetcher({"https://meta.example/keys": vendors.github_meta(pki)})
    keys = github.GitHubKeys(fetcher, "https://meta.example/keys")
    leaked = keyformat.generate("kops_live").plaintext
    headers, body = vendors.github_delivery([leaked, "ghp_notakeyopskey"], pki.github_key)
    github.authenticate(headers, body, keys)
    delivery, feedback = github.parse(body)
    assert len(delivery.signals) == 1 and delivery.signals[0].keys[0].value == keyformat.hash_key(leaked)
    assert delivery.signals[0].evidence["url"].startswith("https://github.com/octocat/")
    assert keyformat.secret_part(leaked) not in repr(delivery) + json.dumps(feedback)
    assert [f["label"] for f in feedback] == ["false_positive", "false_positive"]  # the receiver marks matches


def test_github_refusals(pki: vendors.Pki) -> None:
    fetcher = DictFetcher({"https://meta.example/keys": vendors.github_meta(pki)})
    keys = github.GitHubKeys(fetcher, "https://meta.example/keys")
    headers, body = vendors.github_delivery(["x"], pki.github_key)
    assert rejected(github.authenticate, headers, body + b" ", keys).code == "bad_signature"
    unknown = dict(headers, **{"Github-Public-Key-Identifier": "nope"})
    assert rejected(github.authenticate, unknown, body, keys).code == "unknown_key_identifier"
    assert rejected(github.authenticate, unknown, body, keys).code == "unknown_key_identifier"
    assert len(fetcher.calls) == 1  # unknown identifiers do not make us fetch on every request
    wrong_key = dict(
        headers, **{"Github-Public-Key-Identifier": "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"}
    )
    assert rejected(github.authenticate, wrong_key, body, keys).code == "bad_signature"
    missing = {"Github-Public-Key-Identifier": vendors.GITHUB_KEY_ID}
    assert rejected(github.authenticate, missing, body, keys).code == "missing_header"
    for bad in (b"{}", b"[]", b'[{"url": "x"}]', b"nope"):
        assert rejected(github.parse, bad).status == 400


def test_parse_iso_handles_go_nanoseconds_and_junk() -> None:
    assert parse_iso("2026-11-26T20:59:00.123456789Z") == datetime(2026, 11, 26, 20, 59, 0, 123456, UTC)
    assert parse_iso("0001-01-01T00:00:00Z") is not None
    for junk in ("", "x", None, 5, "2026-13-01T00:00:00Z", "9" * 100):
        assert parse_iso(junk) is None
