"""Leak signals for IAM keys: a signed SNS delivery of an EventBridge GuardDuty
finding (and an AWS Health "exposed credentials" event) naming an access key
rotates that key with zero grace: a new key is minted and delivered, the
leaked one is deactivated at once, a finding is recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from keyops.alerts.receiver import AlertReceiver
from keyops.bootstrap import App
from keyops.inventory import models
from tests.integration import iam_support as iam
from tests.support.servers import MotoServer
from tests.unit.alerts import vendors


@pytest.fixture
def alert_app(
    env: dict[str, str],
    aws_env: dict[str, str],
    moto_server: MotoServer,
    pki: vendors.Pki,
    vendor_server: vendors.LocalServer,
) -> Iterator[App]:
    full = iam.iam_env(
        env,
        aws_env,
        moto_server,
        KEYOPS_ALERTS_SNS_ENABLED="true",
        KEYOPS_ALERTS_SNS_TOPIC_ARNS=vendors.TOPIC,
    )
    app = iam.build_app(full)
    app.alerts.close()
    app.alerts = AlertReceiver(
        app.settings.alerts,
        app.sessions,
        app.keys,
        rotator=lambda: getattr(app, "rotations", None),
        fetcher=vendors.RoutingFetcher(vendor_server, pki),
        background=False,
    )
    try:
        yield app
    finally:
        app.close()


def exposed_credentials_event(access_key_id: str) -> dict[str, Any]:
    """An EventBridge "AWS Health Event" for AWS_RISK_CREDENTIALS_EXPOSED, as AWS documents it."""
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "AWS Health Event",
        "source": "aws.health",
        "account": "123456789012",
        "time": "2026-11-26T21:00:00Z",
        "region": "us-east-1",
        "resources": [access_key_id],
        "detail": {
            "eventArn": "arn:aws:health:global::event/RISK/AWS_RISK_CREDENTIALS_EXPOSED/AWS_RISK_CREDENTIALS_EXPOSED_1",
            "service": "RISK",
            "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
            "eventTypeCategory": "issue",
            "startTime": "Thu, 26 Nov 2026 20:58:00 GMT",
            "eventDescription": [
                {"language": "en_US", "latestDescription": "Your AWS Access Key is exposed publicly on github.com"}
            ],
            "affectedEntities": [{"entityValue": access_key_id}],
        },
    }


@pytest.mark.parametrize("kind", ["guardduty", "exposed_credentials"])
def test_leak_signal_rotates_the_access_key_with_zero_grace(
    alert_app: App, moto_server: MotoServer, pki: vendors.Pki, store_prefix: str, kind: str
) -> None:
    user, first = iam.new_user(moto_server)
    secret = f"{store_prefix}leaky"
    view = iam.adopt(alert_app, "ci/leaky", user, f"aws-sm:{secret}")
    leaked = first["AccessKeyId"]
    message = vendors.guardduty_finding(leaked) if kind == "guardduty" else exposed_credentials_event(leaked)
    doc = vendors.sns_sign(vendors.sns_notification(message), pki.sns_key)
    outcome = alert_app.alerts.receive("sns", {"x-amz-sns-message-type": "Notification"}, json.dumps(doc).encode())
    assert outcome.status == 200, outcome.body
    [acted] = outcome.body["keys"]
    assert (acted["key_id"], acted["action"], acted["result"]) == (view.id, "rotate_now", "rotated with zero grace")

    v1, v2 = iam.versions(alert_app, "ci/leaky")
    assert (v1.state, v2.state) == ("retired", "current")
    assert iam.iam_keys(moto_server, user) == {leaked: "Inactive", v2.external_id: "Active"}
    assert iam.served(moto_server, secret)["AWSCURRENT"]["AccessKeyId"] == v2.external_id
    iam.assert_iam_invariants(alert_app, moto_server, "ci/leaky", user, secret)
    with alert_app.sessions() as session:
        [rotation] = session.execute(select(models.Rotation)).scalars().all()
        [finding] = session.execute(select(models.Finding).where(models.Finding.key_id == view.id)).scalars().all()
    assert (rotation.trigger, rotation.grace_seconds) == ("alert", 0)
    assert finding.detector == "alert:sns" and finding.action == "rotate_now"


def test_guardduty_during_grace_is_not_blocked_by_the_two_key_limit(
    alert_app: App, moto_server: MotoServer, pki: vendors.Pki, store_prefix: str
) -> None:
    """Both IAM slots are taken (old key in grace, new key current) when the
    current key leaks: the old one ends first, so the rotation can mint."""
    user, first = iam.new_user(moto_server)
    secret = f"{store_prefix}grace"
    iam.adopt(alert_app, "ci/grace", user, f"aws-sm:{secret}")
    assert alert_app.rotations.rotate("ci/grace", actor="test").ok
    _, leaked = iam.versions(alert_app, "ci/grace")
    assert len(iam.iam_keys(moto_server, user)) == 2
    doc = vendors.sns_sign(vendors.sns_notification(vendors.guardduty_finding(str(leaked.external_id))), pki.sns_key)
    outcome = alert_app.alerts.receive("sns", {}, json.dumps(doc).encode())
    assert outcome.status == 200 and outcome.body["keys"][0]["result"] == "rotated with zero grace", outcome.body
    v1, v2, v3 = iam.versions(alert_app, "ci/grace")
    assert (v1.state, v2.state, v3.state) == ("retired", "retired", "current")
    assert iam.iam_keys(moto_server, user) == {str(leaked.external_id): "Inactive", str(v3.external_id): "Active"}
    assert first["AccessKeyId"] not in iam.iam_keys(moto_server, user)
    iam.assert_iam_invariants(alert_app, moto_server, "ci/grace", user, secret)
