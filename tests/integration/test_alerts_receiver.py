"""The alert receiver end to end against a real inventory (SQLite and PostgreSQL).

Vendors are real-shaped: SNS certificates and GitHub's key document are served
over HTTPS by a local server with a test CA, fetched through keyops' own
HTTP fetcher. Each format: a valid delivery acts; every kind of bad delivery
gets its 4xx (or a recorded no-op) and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from keyops.alerts.receiver import AlertReceiver
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.domain import keyformat
from keyops.inventory import models
from tests.unit.alerts import vendors

SINK_SECRET = "whsec_" + "b3BzLXNpbmstc2lnbmluZy1zZWNyZXQtMDAwMQ=="


def alert_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env.update(
        {
            "KEYOPS_ALERTS_STANDARD_ENABLED": "true",
            "KEYOPS_ALERTS_STANDARD_SECRETS": vendors.STANDARD_SECRET,
            "KEYOPS_ALERTS_ALERTMANAGER_ENABLED": "true",
            "KEYOPS_ALERTS_ALERTMANAGER_BEARER_TOKEN": vendors.AM_TOKEN,
            "KEYOPS_ALERTS_GRAFANA_ENABLED": "true",
            "KEYOPS_ALERTS_GRAFANA_HMAC_SECRET": vendors.GRAFANA_SECRET,
            "KEYOPS_ALERTS_GRAFANA_TIMESTAMP_HEADER": "X-Grafana-Alerting-Timestamp",
            "KEYOPS_ALERTS_SNS_ENABLED": "true",
            "KEYOPS_ALERTS_SNS_TOPIC_ARNS": vendors.TOPIC,
            "KEYOPS_ALERTS_GITHUB_ENABLED": "true",
            "KEYOPS_ALERTS_MAX_BODY_BYTES": "65536",
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": "http://127.0.0.1:9/hooks",
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": SINK_SECRET,
        }
    )
    return env


def make_app(env: dict[str, str], pki: vendors.Pki, server: vendors.LocalServer, *, background: bool = False) -> App:
    app = build(load_settings(env=alert_env(env)))
    app.alerts.close()
    app.alerts = AlertReceiver(
        app.settings.alerts,
        app.sessions,
        app.keys,
        rotator=lambda: getattr(app, "rotations", None),
        fetcher=vendors.RoutingFetcher(server, pki),
        background=background,
    )
    return app


@pytest.fixture
def alert_app(env: dict[str, str], pki: vendors.Pki, vendor_server: vendors.LocalServer) -> Iterator[App]:
    app = make_app(env, pki, vendor_server)
    try:
        yield app
    finally:
        app.close()


def issue(app: App, name: str = "payments/prod-llm") -> tuple[str, str]:
    issued = app.keys.issue(name, owner="payments", profile="interactive", policy="standard", actor="test")
    return issued.key.id, issued.plaintext


def snapshot(app: App) -> dict[str, Any]:
    with app.sessions() as session:
        count = lambda model: session.execute(select(func.count()).select_from(model)).scalar_one()  # noqa: E731
        return {
            "audit": count(models.AuditEvent),
            "findings": count(models.Finding),
            "inbound": count(models.InboundAlert),
            "outbox": count(models.OutboxEvent),
            "rotations": count(models.Rotation),
            "states": sorted(session.execute(select(models.Key.name, models.Key.state)).all()),
            "versions": sorted(session.execute(select(models.KeyVersion.id, models.KeyVersion.state)).all()),
        }


def inbound(app: App) -> list[models.InboundAlert]:
    with app.sessions() as session:
        return list(session.execute(select(models.InboundAlert).order_by(models.InboundAlert.received_at)).scalars())


def audit_actions(app: App) -> list[tuple[str, str]]:
    with app.sessions() as session:
        rows = session.execute(
            select(models.AuditEvent.action, models.AuditEvent.actor).order_by(models.AuditEvent.seq)
        )
        return [(a, b) for a, b in rows]


def outbox_types(app: App) -> list[str]:
    with app.sessions() as session:
        return list(session.execute(select(models.OutboxEvent.type).order_by(models.OutboxEvent.seq)).scalars())


def key_state(app: App, key_id: str) -> str:
    return app.keys.show(key_id).state


# -- valid deliveries act ---------------------------------------------------


def test_standard_delivery_suspends_and_replay_is_refused(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    headers, body = vendors.standard_delivery(
        {"key_name": "payments/prod-llm", "severity": "critical", "action": "suspend", "reason": "templated prompts"}
    )
    outcome = alert_app.alerts.receive("standard", headers, body)
    assert outcome.status == 200, outcome.body
    assert outcome.body["verdict"] == "acted"
    assert outcome.body["keys"][0]["result"] == "suspended"
    assert key_state(alert_app, key_id) == "suspended"
    assert ("key.suspended", "alert:standard") in audit_actions(alert_app)
    # people hear about the alert through the key's case, not a per-finding event
    assert outbox_types(alert_app) == ["case.opened", "key.suspended"]
    [row] = inbound(alert_app)
    assert (row.source, row.delivery_id, row.verdict, row.action) == (
        "standard",
        headers["webhook-id"],
        "acted",
        "suspend",
    )
    assert row.key_ids == [key_id]
    with alert_app.sessions() as session:
        finding = session.execute(select(models.Finding)).scalar_one()
        assert (finding.key_id, finding.detector, finding.action) == (key_id, "alert:standard", "suspend")
        deliveries = session.execute(select(models.OutboxDelivery.sink)).scalars().all()
        assert deliveries == ["ops", "ops"]
    # the same delivery again (a sender's retry): a success that does nothing again
    before = snapshot(alert_app)
    again = alert_app.alerts.receive("standard", headers, body)
    assert again.status == 200 and again.body["verdict"] == "duplicate"
    assert snapshot(alert_app) == before


def test_alertmanager_firing_critical_suspends_resolved_is_recorded(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    auth = {"Authorization": f"Bearer {vendors.AM_TOKEN}"}
    firing = json.dumps(vendors.alert_group("payments/prod-llm")).encode()
    outcome = alert_app.alerts.receive("alertmanager", auth, firing)
    assert outcome.status == 200 and outcome.body["keys"][0]["action"] == "suspend"
    assert key_state(alert_app, key_id) == "suspended"
    before = snapshot(alert_app)
    resolved = json.dumps(vendors.alert_group("payments/prod-llm", status="resolved")).encode()
    outcome = alert_app.alerts.receive("alertmanager", auth, resolved)
    assert outcome.status == 200 and outcome.body["verdict"] == "recorded"
    after = snapshot(alert_app)
    assert after["inbound"] == before["inbound"] + 1
    assert {k: v for k, v in after.items() if k != "inbound"} == {k: v for k, v in before.items() if k != "inbound"}
    assert inbound(alert_app)[-1].action == "none"


def test_grafana_signed_delivery_acts(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    body = vendors.grafana_body(key_id)  # labels may carry the id as well as the name
    outcome = alert_app.alerts.receive("grafana", vendors.grafana_headers(body), body)
    assert outcome.status == 200, outcome.body
    assert key_state(alert_app, key_id) == "suspended"


def test_sns_cloudwatch_alarm_and_subscription(
    alert_app: App, vendor_server: vendors.LocalServer, pki: vendors.Pki
) -> None:
    key_id, _ = issue(alert_app)
    confirm = vendors.sns_sign(vendors.sns_confirmation(), pki.sns_key)
    outcome = alert_app.alerts.receive(
        "sns", {"x-amz-sns-message-type": "SubscriptionConfirmation"}, json.dumps(confirm).encode()
    )
    assert outcome.status == 200 and outcome.body["verdict"] == "subscription_confirmed"
    assert any("Action=ConfirmSubscription" in hit for hit in vendor_server.hits)
    doc = vendors.sns_sign(vendors.sns_notification(vendors.cloudwatch_alarm("payments/prod-llm")), pki.sns_key, "2")
    outcome = alert_app.alerts.receive("sns", {"x-amz-sns-message-type": "Notification"}, json.dumps(doc).encode())
    assert outcome.status == 200, outcome.body
    assert key_state(alert_app, key_id) == "suspended"
    assert [r.verdict for r in inbound(alert_app)] == ["subscription_confirmed", "acted"]


def test_sns_guardduty_access_key_is_rotated_with_zero_grace(alert_app: App, pki: vendors.Pki) -> None:
    key_id, _ = issue(alert_app)
    with alert_app.sessions.begin() as session:  # as an AWS IAM key records its access key id
        version = session.execute(select(models.KeyVersion).where(models.KeyVersion.key_id == key_id)).scalar_one()
        version.external_id = "AKIAIOSFODNN7EXAMPLE"
    doc = vendors.sns_sign(vendors.sns_notification(vendors.guardduty_finding("AKIAIOSFODNN7EXAMPLE")), pki.sns_key)
    outcome = alert_app.alerts.receive("sns", {}, json.dumps(doc).encode())
    assert outcome.status == 200, outcome.body
    assert outcome.body["keys"][0]["action"] == "rotate_now"
    assert_rotated_now(alert_app, key_id, outcome.body["keys"][0]["result"])


def assert_rotated_now(app: App, key_id: str, result: str) -> None:
    with app.sessions() as session:
        rotations = session.execute(select(models.Rotation).where(models.Rotation.key_id == key_id)).scalars().all()
        audit_rows = session.execute(select(models.AuditEvent.action)).scalars().all()
    if getattr(app, "rotations", None) is None:
        assert result == "rotation requested (no rotation engine)"
        assert "key.rotation_requested" in audit_rows
        return
    assert result == "rotated with zero grace", result
    [rotation] = rotations
    assert (rotation.trigger, rotation.grace_seconds, rotation.actor) == ("alert", 0, rotation.actor)
    assert rotation.actor.startswith("alert:")


def test_github_leak_rotates_with_zero_grace_and_records_the_url(alert_app: App, pki: vendors.Pki) -> None:
    key_id, plaintext = issue(alert_app)
    stranger = keyformat.generate("kops_live").plaintext  # well formed, but not ours
    headers, body = vendors.github_delivery([plaintext, stranger, "ghp_notours"], pki.github_key)
    outcome = alert_app.alerts.receive("github", headers, body)
    assert outcome.status == 200, outcome.body
    labels = {entry["token_hash"]: entry["label"] for entry in outcome.body}
    assert labels[keyformat.hash_key(plaintext)] == "true_positive"
    assert labels[keyformat.hash_key(stranger)] == "false_positive"
    [row] = inbound(alert_app)
    assert row.action == "rotate_now" and row.detail["unknown_keys"][0]["kind"] == "token_hash"
    assert_rotated_now(alert_app, key_id, row.detail["actions"][0]["result"])
    with alert_app.sessions() as session:
        finding = session.execute(select(models.Finding)).scalar_one()
        assert finding.evidence["url"].startswith("https://github.com/octocat/Hello-World/blob/")
        assert finding.detector == "alert:github" and finding.action == "rotate_now"
    dump = json.dumps([snapshot(alert_app), row.detail, finding.evidence, outcome.body], default=str)
    assert keyformat.secret_part(plaintext) not in dump and keyformat.secret_part(stranger) not in dump


def test_background_rotation_answers_first(
    env: dict[str, str], pki: vendors.Pki, vendor_server: vendors.LocalServer
) -> None:
    app = make_app(env, pki, vendor_server, background=True)
    try:
        key_id, _ = issue(app)
        headers, body = vendors.standard_delivery({"key_id": key_id, "action": "rotate_now", "reason": "leaked"})
        outcome = app.alerts.receive("standard", headers, body)
        assert outcome.status == 200
        assert app.alerts.wait_idle(60)
        [row] = inbound(app)
        assert_rotated_now(app, key_id, row.detail["actions"][0]["result"])
    finally:
        app.close()


# -- refusals change nothing ------------------------------------------------


def refusal_cases(pki: vendors.Pki, key_id: str) -> list[tuple[str, str, dict[str, str], bytes, int]]:
    now = datetime.now(UTC)
    cases: list[tuple[str, str, dict[str, str], bytes, int]] = []
    std_h, std_b = vendors.standard_delivery({"key_id": key_id, "action": "revoke"})
    cases += [
        ("standard wrong signature", "standard", std_h, std_b.replace(b"revoke", b"suspend"), 401),
        (
            "standard missing header",
            "standard",
            {k: v for k, v in std_h.items() if k != "webhook-signature"},
            std_b,
            401,
        ),
        (
            "standard stale",
            "standard",
            *vendors.standard_delivery({"key_id": key_id}, when=now - timedelta(hours=1)),
            401,
        ),
    ]
    bad_json_h, _ = vendors.standard_delivery({"key_id": key_id})
    import base64
    import hashlib
    import hmac

    raw = b"{not json"
    stamp = bad_json_h["webhook-timestamp"]
    mac = hmac.new(
        base64.b64decode(vendors.STANDARD_SECRET[6:]),
        f"{bad_json_h['webhook-id']}.{stamp}.".encode() + raw,
        hashlib.sha256,
    )
    bad_json_h["webhook-signature"] = "v1," + base64.b64encode(mac.digest()).decode()
    cases.append(("standard malformed json", "standard", bad_json_h, raw, 400))
    big_h, big_b = vendors.standard_delivery({"key_id": key_id, "reason": "x" * 70000})
    cases.append(("standard oversized", "standard", big_h, big_b, 413))
    am = json.dumps(vendors.alert_group(key_id)).encode()
    cases += [
        ("alertmanager no auth", "alertmanager", {}, am, 401),
        ("alertmanager wrong token", "alertmanager", {"Authorization": "Bearer wrong"}, am, 401),
        ("alertmanager malformed", "alertmanager", {"Authorization": f"Bearer {vendors.AM_TOKEN}"}, b"[1,", 400),
    ]
    gf = vendors.grafana_body(key_id)
    cases += [
        ("grafana wrong signature", "grafana", vendors.grafana_headers(gf, secret="x" * 20), gf, 401),
        ("grafana stale", "grafana", vendors.grafana_headers(gf, when=now - timedelta(hours=2)), gf, 401),
        ("grafana missing headers", "grafana", {}, gf, 401),
    ]
    sns_doc = vendors.sns_sign(vendors.sns_notification(vendors.cloudwatch_alarm(key_id)), pki.other_key)
    stale_doc = vendors.sns_sign(
        vendors.sns_notification(vendors.cloudwatch_alarm(key_id), when=now - timedelta(hours=3)), pki.sns_key
    )
    cases += [
        ("sns forged", "sns", {}, json.dumps(sns_doc).encode(), 401),
        ("sns stale", "sns", {}, json.dumps(stale_doc).encode(), 401),
        ("sns malformed", "sns", {}, b"\xff\xfe", 400),
    ]
    gh_h, gh_b = vendors.github_delivery(["kops_live_x"], pki.github_key)
    cases += [
        ("github tampered", "github", gh_h, gh_b.replace(b"content", b"commit!"), 401),
        ("github missing headers", "github", {}, gh_b, 401),
        ("unknown source", "pagerduty", {}, b"{}", 404),
    ]
    return cases


def test_refusals_change_nothing(alert_app: App, pki: vendors.Pki) -> None:
    key_id, _ = issue(alert_app)
    before = snapshot(alert_app)
    for name, source, headers, body, status in refusal_cases(pki, key_id):
        outcome = alert_app.alerts.receive(source, headers, body)
        assert outcome.status == status, (name, outcome.body)
        assert set(outcome.body) == {"error", "message"}, name
        assert snapshot(alert_app) == before, name


def test_unknown_key_is_a_recorded_no_op(alert_app: App) -> None:
    issue(alert_app)
    before = snapshot(alert_app)
    headers, body = vendors.standard_delivery({"key_name": "nobody/knows", "action": "revoke"})
    outcome = alert_app.alerts.receive("standard", headers, body)
    assert outcome.status == 200 and outcome.body["verdict"] == "no_op" and outcome.body["unknown_keys"] == 1
    after = snapshot(alert_app)
    assert after["inbound"] == before["inbound"] + 1
    assert {k: v for k, v in after.items() if k != "inbound"} == {k: v for k, v in before.items() if k != "inbound"}
    [row] = inbound(alert_app)
    assert row.verdict == "no_op" and row.detail["unknown_keys"] == [{"kind": "name", "value": "nobody/knows"}]


def test_disabled_source_is_not_found(env: dict[str, str]) -> None:
    app = build(load_settings(env=env))
    try:
        headers, body = vendors.standard_delivery({"key_name": "a/b"})
        assert app.alerts.receive("standard", headers, body).status == 404
    finally:
        app.close()


def test_nul_characters_are_harmless(alert_app: App) -> None:
    """PostgreSQL refuses NUL in text and JSON; a sender's NUL must not become a 500."""
    key_id, _ = issue(alert_app)
    headers, body = vendors.standard_delivery(
        {"key_name": "payments/prod-llm\u0000", "reason": "a\u0000b", "evidence": {"x\u0000": "y\u0000"}}
    )
    assert alert_app.alerts.receive("standard", headers, body).status == 200
    headers, body = vendors.standard_delivery(
        {
            "key_id": key_id,
            "reason": "nul\u0000here",
            "severity": "crit\u0000",
            "evidence": ["\u0000"],
            "kind": "\u0000",
        }
    )
    assert alert_app.alerts.receive("standard", headers, body).status == 200
    group = vendors.alert_group("payments/prod-llm")
    group["alerts"][0]["labels"]["note\u0000"] = "\u0000"
    group["alerts"][0]["annotations"]["summary"] = "\u0000 summary"
    body = json.dumps(group).encode()
    assert alert_app.alerts.receive("alertmanager", {"Authorization": f"Bearer {vendors.AM_TOKEN}"}, body).status == 200


def test_actions_a_crashed_process_never_applied_are_resumed_once(alert_app: App) -> None:
    suspend_id, _ = issue(alert_app, "team/suspend-me")
    rotate_id, _ = issue(alert_app, "team/rotate-me")
    for key_id, action in ((suspend_id, "suspend"), (rotate_id, "rotate_now")):
        headers, body = vendors.standard_delivery({"key_id": key_id, "action": action, "reason": "crash test"})
        # Record only, as a process that died right after the first transaction would have.
        receiver = alert_app.alerts
        plan = receiver._plan(receiver._authenticate_and_parse("standard", headers, body, datetime.now(UTC)))  # type: ignore[arg-type]
        assert receiver._record(plan) is not None
    assert {r.verdict for r in inbound(alert_app)} == {"acting"}
    assert key_state(alert_app, suspend_id) == "active"
    assert alert_app.alerts.resume_unfinished(older_than=60) == 0  # too recent: maybe still being applied
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert alert_app.alerts.resume_unfinished(later, older_than=60) == 2
    assert key_state(alert_app, suspend_id) == "suspended"
    rows = inbound(alert_app)
    assert {r.verdict for r in rows} == {"acted"} and all(r.detail["resumed"] for r in rows)
    assert_rotated_now(alert_app, rotate_id, rows[1].detail["actions"][0]["result"])
    assert alert_app.alerts.resume_unfinished(later, older_than=60) == 0  # exactly once


# -- repeats, old versions, severities and actions ---------------------------


def test_a_repeated_delivery_is_answered_2xx_for_every_source_and_acts_once(alert_app: App, pki: vendors.Pki) -> None:
    key_id, plaintext = issue(alert_app)
    with alert_app.sessions.begin() as session:
        version = session.execute(select(models.KeyVersion).where(models.KeyVersion.key_id == key_id)).scalar_one()
        version.external_id = "AKIAIOSFODNN7EXAMPLE"
    std_headers, std_body = vendors.standard_delivery({"key_id": key_id, "action": "notify"})
    am_body = json.dumps(vendors.alert_group("payments/prod-llm", severity="warning")).encode()
    gf_body = vendors.grafana_body(key_id, severity="warning")
    sns_doc = vendors.sns_sign(vendors.sns_notification(vendors.cloudwatch_alarm("payments/prod-llm")), pki.sns_key)
    confirm = vendors.sns_sign(vendors.sns_confirmation(), pki.sns_key)
    gh_headers, gh_body = vendors.github_delivery([plaintext], pki.github_key)
    deliveries = [
        ("standard", std_headers, std_body),
        ("alertmanager", {"Authorization": f"Bearer {vendors.AM_TOKEN}"}, am_body),
        ("grafana", vendors.grafana_headers(gf_body), gf_body),
        ("sns", {}, json.dumps(confirm).encode()),
        ("sns", {}, json.dumps(sns_doc).encode()),
        ("github", gh_headers, gh_body),
    ]
    for source, headers, body in deliveries:
        first = alert_app.alerts.receive(source, headers, body)
        assert first.status == 200, (source, first.body)
        before = snapshot(alert_app)
        again = alert_app.alerts.receive(source, headers, body)
        assert again.status == 200, (source, again.body)
        if source == "github":
            assert [entry["duplicate"] for entry in again.body] == [True]
        else:
            assert again.body["verdict"] == "duplicate", (source, again.body)
        assert snapshot(alert_app) == before, source


def test_a_replay_with_a_wrong_signature_or_a_stale_timestamp_is_still_refused(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    headers, body = vendors.standard_delivery({"key_id": key_id, "action": "notify"})
    assert alert_app.alerts.receive("standard", headers, body).status == 200
    before = snapshot(alert_app)
    forged = {**headers, "webhook-signature": "v1," + "A" * 44}
    assert alert_app.alerts.receive("standard", forged, body).status == 401
    late = datetime.now(UTC) + timedelta(hours=1)
    assert alert_app.alerts.receive("standard", headers, body, late).status == 401
    am_body = json.dumps(vendors.alert_group("payments/prod-llm", severity="warning")).encode()
    assert (
        alert_app.alerts.receive("alertmanager", {"Authorization": f"Bearer {vendors.AM_TOKEN}"}, am_body).status == 200
    )
    before = snapshot(alert_app)
    assert alert_app.alerts.receive("alertmanager", {"Authorization": "Bearer wrong"}, am_body).status == 401
    assert snapshot(alert_app) == before


def test_a_report_of_a_retired_version_is_recorded_never_rotated(alert_app: App, pki: vendors.Pki) -> None:
    key_id, first = issue(alert_app)
    alert_app.rotations.rotate(key_id, grace_seconds=0, actor="test")
    alert_app.rotations.rotate(key_id, grace_seconds=0, actor="test")
    versions = {v.number: v.state for v in alert_app.keys.show(key_id).versions}
    assert versions[1] in ("retired", "revoked") and versions[3] == "current", versions
    before = snapshot(alert_app)
    headers, body = vendors.github_delivery([first], pki.github_key)
    outcome = alert_app.alerts.receive("github", headers, body)
    assert outcome.status == 200, outcome.body
    after = snapshot(alert_app)
    assert after["rotations"] == before["rotations"] and after["versions"] == before["versions"]
    assert after["states"] == before["states"]
    [row] = inbound(alert_app)
    assert row.action == "notify"
    with alert_app.sessions() as session:
        finding = session.execute(select(models.Finding)).scalar_one()
        event = session.execute(
            select(models.AuditEvent).where(models.AuditEvent.action == "alert.received")
        ).scalar_one()
    assert finding.action == "notify" and finding.evidence["reported_versions"][0]["number"] == 1
    assert event.details["action"] == "notify" and "v1 is" in event.details["rule"]
    assert "case.opened" in outbox_types(alert_app) and "finding.created" not in outbox_types(alert_app)
    with alert_app.sessions() as session:
        case = session.execute(select(models.Case)).scalar_one()
        assert case.key_id == key_id and case.finding_count == 1
        assert session.get(models.Finding, finding.id).case_id == case.id
    # the current version is still acted on as before
    current = alert_app.keys.show(key_id).versions[-1]
    assert current.state == "current"


def test_a_report_of_the_current_version_still_rotates(alert_app: App, pki: vendors.Pki) -> None:
    key_id, first = issue(alert_app)
    result = alert_app.rotations.rotate(key_id, grace_seconds=3600, actor="test")
    assert result.status == "finished"
    headers, body = vendors.github_delivery([first], pki.github_key)  # v1 is previous, in its grace
    outcome = alert_app.alerts.receive("github", headers, body)
    assert outcome.status == 200, outcome.body
    [row] = inbound(alert_app)
    assert row.action == "rotate_now"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("critical", "critical"), ("page", "critical"), ("error", "high"), ("warning", "medium"), ("info", "low")],
)
def test_sender_severities_map_to_the_fixed_set(alert_app: App, sent: str, stored: str) -> None:
    issue(alert_app)
    body = json.dumps(vendors.alert_group("payments/prod-llm", severity=sent)).encode()
    outcome = alert_app.alerts.receive("alertmanager", {"Authorization": f"Bearer {vendors.AM_TOKEN}"}, body)
    assert outcome.status == 200, outcome.body
    with alert_app.sessions() as session:
        finding = session.execute(select(models.Finding)).scalar_one()
    assert finding.severity == stored


def test_an_unknown_severity_is_medium_and_kept_as_evidence(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    headers, body = vendors.standard_delivery({"key_id": key_id, "severity": "apocalyptic", "action": "notify"})
    outcome = alert_app.alerts.receive("standard", headers, body)
    assert outcome.status == 200, outcome.body
    with alert_app.sessions() as session:
        finding = session.execute(select(models.Finding)).scalar_one()
    assert finding.severity == "medium"
    assert finding.evidence["sender_severity"] == "apocalyptic"


def test_an_unknown_requested_action_is_refused_and_nothing_is_stored(alert_app: App) -> None:
    key_id, _ = issue(alert_app)
    before = snapshot(alert_app)
    headers, body = vendors.standard_delivery({"key_id": key_id, "severity": "apocalyptic", "action": "explode"})
    outcome = alert_app.alerts.receive("standard", headers, body)
    assert outcome.status == 400
    assert outcome.body["error"] == "unknown_action"
    assert outcome.body["message"] == (
        "unknown action 'explode': use one of none, notify, rotate, rotate_now, suspend, revoke"
    )
    group = vendors.alert_group("payments/prod-llm")
    group["alerts"][0]["labels"]["keyops_action"] = "explode"
    am = alert_app.alerts.receive(
        "alertmanager", {"Authorization": f"Bearer {vendors.AM_TOKEN}"}, json.dumps(group).encode()
    )
    assert am.status == 400 and am.body["error"] == "unknown_action"
    assert snapshot(alert_app) == before


def test_alerts_about_one_key_gather_in_its_case_and_repeat_no_message(alert_app: App) -> None:
    key_id, _ = issue(alert_app)

    def send(severity: str, action: str) -> None:
        headers, body = vendors.standard_delivery(
            {"key_id": key_id, "severity": severity, "action": action, "reason": "odd traffic"}
        )
        assert alert_app.alerts.receive("standard", headers, body).status == 200

    send("high", "notify")
    send("high", "notify")  # the same news again: recorded in the case, nobody told twice
    send("medium", "notify")
    assert [t for t in outbox_types(alert_app) if t.startswith("case.")] == ["case.opened"]
    send("high", "suspend")  # a stronger decision is news
    send("critical", "notify")  # so is a higher severity
    assert [t for t in outbox_types(alert_app) if t.startswith("case.")] == [
        "case.opened",
        "case.escalated",
        "case.escalated",
    ]
    with alert_app.sessions() as session:
        [case] = session.execute(select(models.Case)).scalars().all()
        assert (case.key_id, case.finding_count, case.severity, case.action) == (key_id, 5, "critical", "suspend")
