"""Detection through the real inventory (SQLite and PostgreSQL): findings
persisted, actions applied through lifecycle with evidence in the audit log,
and live intake equal to replay."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from keyops import audit
from keyops.bootstrap import App
from keyops.detect.events import UsageEvent
from keyops.inventory import models
from tests.traffic.generator import Traffic, bind, generate
from tests.traffic.harness import parse_all

SCENARIOS = {
    "attack-coordinated",
    "attack-proxy-mix",
    "attack-leaked-key",
    "lookalike-popular-system-prompt",
    "lookalike-moved-office",
}


@pytest.fixture(scope="module")
def traffic() -> Iterator[Traffic]:
    full = generate(seed=11, days=4, scale=0.25, attack_hours=1.5)
    keys = [k for k in full.keys if k.scenario in SCENARIOS]
    names = {k.name for k in keys}
    yield Traffic(seed=full.seed, days=full.days, keys=keys, events=[e for e in full.events if e["_key"] in names])


def issue_all(app: App, traffic: Traffic) -> dict[str, str]:
    ids = {}
    for spec in traffic.keys:
        issued = app.keys.issue(spec.name, owner=spec.owner, profile=spec.profile, policy="standard", actor="test")
        ids[spec.name] = issued.key.id
    return ids


def feed_live(app: App, events: list[UsageEvent], seed: int = 3) -> tuple[list[Any], list[Any]]:
    """Post-like batches of 500, arrival order jittered within the lateness."""
    rng = random.Random(seed)
    arrival = sorted(events, key=lambda e: e.ts + rng.uniform(-4.0, 0.0))
    findings: list[Any] = []
    actions: list[Any] = []
    for i in range(0, len(arrival), 500):
        result = app.detection.ingest(arrival[i : i + 500])
        assert not result.rejected, result.rejected[:3]
        findings += result.findings
        actions += result.actions
    final = app.detection.flush()
    return findings + final.findings, actions + final.actions


def test_scenarios_through_the_inventory(app: App, traffic: Traffic) -> None:
    ids = issue_all(app, traffic)
    events = parse_all(bind(traffic, ids))
    findings, actions = feed_live(app, events)
    states = {view.name: view.state for view in app.keys.list(limit=10000)}
    members = [k.name for k in traffic.keys if k.scenario == "attack-coordinated"]
    assert sum(states[m] == "suspended" for m in members) >= 0.9 * len(members)
    proxy = next(k.name for k in traffic.keys if k.scenario == "attack-proxy-mix")
    assert states[proxy] == "suspended"  # extraction by the owner: suspended, not rotated
    leaked = next(k.name for k in traffic.keys if k.scenario == "attack-leaked-key")
    assert any(a.action == "rotate" and a.key_name == leaked for a in actions)
    for spec in traffic.keys:
        if spec.scenario.startswith("lookalike"):
            assert states[spec.name] == "active", spec.name
    with app.sessions() as session:
        rows = session.execute(select(models.Finding)).scalars().all()
        assert len(rows) == len(findings)
        assert {r.id for r in rows} == {f.id for f in findings}
        cluster_rows = [r for r in rows if r.detector == "coordinated" and r.key_id is None]
        assert cluster_rows and cluster_rows[0].evidence["members"] >= 5
        audit_actions = (
            session.execute(select(models.AuditEvent).where(models.AuditEvent.action == "detection.action"))
            .scalars()
            .all()
        )
        assert len(audit_actions) == len(actions)
        suspended = [a for a in audit_actions if a.details["action"] == "suspend"]
        assert suspended and all(a.details["evidence"]["detectors"] for a in suspended)
        # findings are recorded for the evidence trail; no sink opted in to
        # finding.created, so none is written (people are told through cases)
        assert (
            session.execute(select(models.OutboxEvent).where(models.OutboxEvent.type == "finding.created"))
            .scalars()
            .first()
            is None
        )
        assert audit.verify(session).ok


def test_rotate_action_goes_through_the_rotation_engine(app: App, traffic: Traffic) -> None:
    """A leaked key (a second origin beside the usual one) is rotated, with zero grace."""
    proxy = [k for k in traffic.keys if k.scenario == "attack-leaked-key"]
    subset = Traffic(seed=traffic.seed, days=traffic.days, keys=proxy)
    subset.events = [e for e in traffic.events if e["_key"] == proxy[0].name]
    ids = issue_all(app, subset)
    _, actions = feed_live(app, parse_all(bind(subset, ids)))
    rotate = [a for a in actions if a.action == "rotate"]
    assert rotate, [a.action for a in actions]
    assert rotate[0].applied, rotate[0].outcome
    view = app.keys.show(proxy[0].name)
    assert max(v.number for v in view.versions) >= 2  # new material, zero grace
    with app.sessions() as session:
        rotation = session.execute(
            select(models.Rotation).where(models.Rotation.key_id == ids[proxy[0].name])
        ).scalar_one()
        assert rotation.trigger == "detector" and rotation.grace_seconds == 0


def test_live_intake_and_replay_give_the_same_findings(app: App, traffic: Traffic) -> None:
    keys = [k for k in traffic.keys if k.scenario in ("attack-proxy-mix", "lookalike-moved-office")]
    names = {k.name for k in keys}
    subset = Traffic(seed=traffic.seed, days=traffic.days, keys=keys)
    subset.events = [e for e in traffic.events if e["_key"] in names]
    ids = issue_all(app, subset)
    events = parse_all(bind(subset, ids))
    replay = app.detection.replay_session(dry_run=True)
    replayed = replay.ingest(events)
    final = replay.flush()
    replay_ids = sorted(f.identity() for f in replayed.findings + final.findings)
    live_findings, _ = feed_live(app, events, seed=8)
    assert replay_ids == sorted(f.identity() for f in live_findings)
    assert replay_ids, "the proxy key produces findings"


def test_bad_and_unknown_events_are_rejected_and_change_nothing(app: App, traffic: Traffic) -> None:
    spec = traffic.keys[0]
    issued = app.keys.issue(spec.name, owner=spec.owner, profile=spec.profile, policy="standard", actor="test")
    good = parse_all([{"ts": 1793491200.0 + i, "key_id": issued.key.id, "prompt": f"hello {i}"} for i in range(60)])
    unknown = parse_all([{"ts": 1793491230.0, "key_id": "01a219fe-a712-7523-b8e2-000000000009"}])
    result = app.detection.ingest(good + unknown)
    assert [(r.index, r.reason) for r in result.rejected] == [(60, "unknown_key")]
    assert "unknown key" in result.rejected[0].error
    seen = app.detection.engine.keys[issued.key.id].n
    late = parse_all([{"ts": 1793491201.0, "key_id": issued.key.id, "output_tokens": 10**6}])
    result = app.detection.ingest(late)
    assert [r.reason for r in result.rejected] == ["late"] and "watermark" in result.rejected[0].error
    assert app.detection.engine.keys[issued.key.id].n == seen
    assert app.detection.engine.keys[issued.key.id].tok_out == 0


@pytest.mark.parametrize("mode", ["monitor", "shadow"])
def test_per_key_override_to_monitor_or_shadow_records_but_does_not_act(app: App, traffic: Traffic, mode: str) -> None:
    proxy = [k for k in traffic.keys if k.scenario == "attack-proxy-mix"]
    subset = Traffic(seed=traffic.seed, days=traffic.days, keys=proxy)
    subset.events = [e for e in traffic.events if e["_key"] == proxy[0].name]
    ids = issue_all(app, subset)
    with app.sessions.begin() as session:
        key = session.get(models.Key, ids[proxy[0].name])
        assert key is not None
        key.profile_overrides = {"enforcement": mode, "detectors": {"templated": {"min_prompts": 20}}}
    _, actions = feed_live(app, parse_all(bind(subset, ids)))
    assert actions, "reasoning evidence still leads to a decision"
    assert all(a.enforcement == mode and not a.applied for a in actions)
    with app.sessions() as session:
        decided = [session.get(models.Finding, a.finding.id) for a in actions]
        assert decided and all(f is not None and f.enforcement == mode for f in decided)
    assert app.keys.show(proxy[0].name).state == "active"
    with app.sessions() as session:
        events = (
            session.execute(select(models.AuditEvent).where(models.AuditEvent.action == "detection.action"))
            .scalars()
            .all()
        )
        assert events and not any(e.details["applied"] for e in events)
