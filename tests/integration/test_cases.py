"""Cases through the real inventory (SQLite and PostgreSQL) and real sinks.

The engine's output (findings, actions, case notices) is built here directly
and pushed through the detection service's persistence, which is the
contract between judgement and what reaches people: one message per notice,
none per finding, none for a ``notify`` action, none in shadow mode, and
none for a notice processed twice. A local HTTP server is the webhook and
Slack sink."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.detect.engine import Output
from keyops.detect.model import ActionRecord, CaseNotice, FindingRecord
from keyops.inventory import models
from keyops.lifecycle.detection import IngestResult
from tests.integration.test_notify_delivery import Receiver

SECRET = "whsec_" + base64.b64encode(b"case-sink-signing-secret-00001").decode()
T0 = 1793491200.0
SECRET_IN_PROMPT = "kopt_" + "a1B2" * 6  # an API token pasted into a prompt


@pytest.fixture
def sink() -> Iterator[Receiver]:
    receiver = Receiver(base64.b64decode(SECRET[6:])).start()
    yield receiver
    receiver.stop()


def _app(env: dict[str, str], sink: Receiver, **extra: str) -> App:
    env = dict(env)
    env.update(
        {
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_URL": f"http://127.0.0.1:{sink.port}/hooks",
            "KEYOPS_NOTIFY_WEBHOOKS_OPS_SECRET": SECRET,
            "KEYOPS_NOTIFY_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{sink.port}/slack",
            **extra,
        }
    )
    return build(load_settings(env=env))


@pytest.fixture
def case_app(env: dict[str, str], sink: Receiver) -> Iterator[App]:
    app = _app(env, sink)
    yield app
    app.close()


def issue(app: App, name: str = "payments/prod-llm") -> tuple[str, str]:
    key = app.keys.issue(name, owner="team", profile="interactive", policy="standard", actor="test").key
    return key.id, key.name


def finding(key: tuple[str, str] | None, at: float, *, severity: str = "low", action: str = "none", **kw: Any):  # type: ignore[no-untyped-def]
    return FindingRecord(
        detector=kw.pop("detector", "reasoning"),
        key_id=key[0] if key else None,
        key_name=key[1] if key else None,
        severity=severity,
        score=3.0,
        at=at,
        summary=kw.pop("summary", "42 of 60 recent prompts ask for the model's internal reasoning"),
        evidence=kw.pop(
            "evidence",
            {"summary": "elicitation", "observed": {"share": 0.7}, "samples": [f"explain {SECRET_IN_PROMPT} step"]},
        ),
        action=action,
        **kw,
    )


def notice(
    key: tuple[str, str] | None, case_id: str, f: FindingRecord | None, *, kind: str = "opened", **kw: Any
) -> CaseNotice:
    return CaseNotice(
        case_id=case_id,
        kind=kind,
        key_id=key[0] if key else None,
        key_name=key[1] if key else None,
        cluster_id=kw.pop("cluster_id", None),
        severity=kw.pop("severity", "high"),
        at=f.at if f else T0,
        summary=kw.pop("summary", f"reasoning extraction against its own baseline ({SECRET_IN_PROMPT})"),
        action=kw.pop("action", "suspend"),
        enforcement=kw.pop("enforcement", "enforce"),
        finding=f,
        members=kw.pop("members", 1),
    )


def action(key: tuple[str, str], f: FindingRecord, what: str, enforcement: str = "enforce") -> ActionRecord:
    return ActionRecord(
        key_id=key[0],
        key_name=key[1],
        action=what,
        at=f.at,
        severity=f.severity,
        reason=f.summary,
        enforcement=enforcement,
        finding=f,
    )


def push(app: App, **parts: Any) -> IngestResult:
    """The engine's output through the service, as ingest/advance/flush do."""
    result = IngestResult()
    app.detection._finish(Output(**parts), result)
    return result


def outbox(app: App) -> list[tuple[str, dict[str, Any]]]:
    with app.sessions() as session:
        rows = session.execute(select(models.OutboxEvent).order_by(models.OutboxEvent.seq)).scalars()
        return [(r.type, dict(r.payload)) for r in rows]


def deliver(app: App) -> None:
    report = app.notify.deliver_due(worker_id="t")
    assert report.failed == 0 and report.dead == 0, report.errors


def case_row(app: App, case_id: str) -> models.Case:
    with app.sessions() as session:
        row = session.get(models.Case, case_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_notice_opens_one_case_its_findings_join_and_people_get_one_message(case_app: App, sink: Receiver) -> None:
    key = issue(case_app)
    case_app.notify.deliver_due()  # nothing about issuing reaches these sinks' defaults but key events
    sink.accepted.clear()
    sink.slack.clear()
    low = finding(key, T0)
    high = finding(key, T0 + 300, severity="high", action="notify", detector="combined")
    push(
        case_app,
        findings=[low, high],
        actions=[action(key, high, "notify")],
        notifications=[notice(key, "case-one", high, action="notify")],
    )
    case = case_row(case_app, "case-one")
    assert (case.key_id, case.severity, case.status, case.finding_count) == (key[0], "high", "open", 2)
    with case_app.sessions() as session:
        linked = session.execute(select(models.Finding.case_id)).scalars().all()
    assert linked == ["case-one", "case-one"]
    events = outbox(case_app)
    assert [t for t, _ in events if t.startswith(("case.", "finding."))] == ["case.opened"]
    payload = next(p for t, p in events if t == "case.opened")
    assert payload["key_name"] == key[1] and payload["finding_id"] == high.id
    assert payload["case_id"] == "case-one" and payload["severity"] == "high"
    assert SECRET_IN_PROMPT not in str(payload), "case payloads are redacted"
    deliver(case_app)
    assert [e["type"] for e in sink.accepted] == ["case.opened"]
    assert len(sink.slack) == 1 and "payments/prod-llm" in sink.slack[0] and "case-one" in sink.slack[0]

    # a later finding (its own batch, no notice) joins the live case; nobody is told
    later = finding(key, T0 + 900, severity="medium")
    push(case_app, findings=[later])
    assert case_row(case_app, "case-one").finding_count == 3
    # the same notice processed again (a replay of the same log) sends nothing
    push(case_app, notifications=[notice(key, "case-one", None, action="notify")])
    deliver(case_app)
    assert [e["type"] for e in sink.accepted] == ["case.opened"] and len(sink.slack) == 1

    # escalation: one more message, the case rises
    crit = finding(key, T0 + 1200, severity="critical", action="suspend", detector="combined")
    push(
        case_app,
        findings=[crit],
        actions=[action(key, crit, "suspend")],
        notifications=[notice(key, "case-one", crit, kind="escalated", severity="critical")],
    )
    deliver(case_app)
    cases_sent = [e for e in sink.accepted if e["type"].startswith("case.")]
    assert [e["type"] for e in cases_sent] == ["case.opened", "case.escalated"]
    assert cases_sent[1]["data"]["previous_severity"] == "high"
    case = case_row(case_app, "case-one")
    assert (case.severity, case.action, case.finding_count) == ("critical", "suspend", 4)
    assert case_app.keys.show(key[0]).state == "suspended"
    assert sink.rejected_signatures == 0


def test_plain_findings_and_notify_actions_reach_nobody(case_app: App, sink: Receiver) -> None:
    key = issue(case_app)
    found = [finding(key, T0 + i * 300, severity="medium", action="notify") for i in range(5)]
    result = push(case_app, findings=found, actions=[action(key, f, "notify") for f in found])
    assert all(f.id for f in found)
    assert all(a.outcome.startswith("recorded") and not a.applied for a in result.actions)
    assert not [t for t, _ in outbox(case_app) if t.startswith(("case.", "finding."))]
    deliver(case_app)
    assert [e["type"] for e in sink.accepted if not e["type"].startswith("key.")] == []
    assert sink.slack == []
    with case_app.sessions() as session:
        assert session.execute(select(func.count()).select_from(models.Case)).scalar_one() == 0
        audited = session.execute(
            select(models.AuditEvent).where(models.AuditEvent.action == "detection.action")
        ).scalars()
        assert [e.details["applied"] for e in audited] == [False] * 5


def test_a_sink_that_opts_in_gets_finding_created(env: dict[str, str], sink: Receiver) -> None:
    app = _app(env, sink, KEYOPS_NOTIFY_WEBHOOKS_OPS_EVENTS="finding.created,case.opened")
    try:
        key = issue(app)
        found = [finding(key, T0), finding(key, T0 + 300)]
        push(app, findings=found, notifications=[notice(key, "case-opt", found[1])])
        deliver(app)
        assert sorted(e["type"] for e in sink.accepted) == ["case.opened", "finding.created", "finding.created"]
        created = [e["data"] for e in sink.accepted if e["type"] == "finding.created"]
        assert {d["case_id"] for d in created} == {"case-opt"}
        assert len(sink.slack) == 1  # slack's defaults: the case only
    finally:
        app.close()


def test_a_cluster_case_gathers_its_members_findings(case_app: App, sink: Receiver) -> None:
    keys = [issue(case_app, f"farm/k{i}") for i in range(3)]
    cluster = "01a219fe-a712-7523-b8e2-00000000c1c1"
    head = finding(None, T0, severity="high", detector="coordinated", cluster_id=cluster, action="suspend")
    members = [finding(k, T0, severity="high", cluster_id=cluster, action="suspend") for k in keys]
    push(
        case_app,
        findings=[head, *members],
        notifications=[notice(None, "case-cluster", head, cluster_id=cluster, members=3)],
    )
    case = case_row(case_app, "case-cluster")
    assert (case.cluster_id, case.key_id, case.members, case.finding_count) == (cluster, None, 3, 4)
    deliver(case_app)
    assert [e["type"] for e in sink.accepted if e["type"].startswith("case.")] == ["case.opened"]
    assert "cluster 01a219fe (3 keys)" in sink.slack[-1]


@pytest.mark.parametrize("how", ["profile", "global"])
def test_shadow_records_the_decision_and_the_case_acts_on_nothing_tells_nobody(
    env: dict[str, str], sink: Receiver, how: str
) -> None:
    extra = {"KEYOPS_DETECTION_ENFORCEMENT": "shadow"} if how == "global" else {}
    mode = "enforce" if how == "global" else "shadow"  # the engine's mode; the switch overrides it
    app = _app(env, sink, **extra)
    try:
        assert app.detection.enforcement == ("shadow" if how == "global" else "profile")
        key = issue(app)
        deliver(app)
        before = len(sink.accepted), len(sink.slack)
        crit = finding(key, T0, severity="critical", action="suspend", detector="combined")
        result = push(
            app,
            findings=[crit],
            actions=[action(key, crit, "suspend", mode)],
            notifications=[notice(key, "case-shadow", crit, severity="critical", enforcement=mode)],
        )
        assert result.actions[0].enforcement == "shadow" and not result.actions[0].applied
        assert result.actions[0].outcome == "shadow mode: would suspend"
        assert app.keys.show(key[0]).state == "active"
        with app.sessions() as session:
            stored = session.get(models.Finding, crit.id)
            assert stored is not None and (stored.action, stored.enforcement) == ("suspend", "shadow")
            audited = session.execute(
                select(models.AuditEvent).where(models.AuditEvent.action == "detection.action")
            ).scalar_one()
            assert audited.details["applied"] is False and audited.details["enforcement"] == "shadow"
        case = case_row(app, "case-shadow")
        assert (case.enforcement, case.severity, case.finding_count) == ("shadow", "critical", 1)
        assert not [t for t, _ in outbox(app) if t.startswith(("case.", "finding."))]
        deliver(app)
        assert (len(sink.accepted), len(sink.slack)) == before
    finally:
        app.close()


def test_a_bad_global_enforcement_setting_is_one_clear_error(env: dict[str, str]) -> None:
    from keyops.errors import ConfigError

    with pytest.raises(ConfigError, match=r"detection\.enforcement must be one of profile, shadow"):
        load_settings(env={**env, "KEYOPS_DETECTION_ENFORCEMENT": "loud"})
