"""Retention: received alerts, findings and delivered outbox rows past their
retention are deleted (by the daemon's prune job and by ``keyops db
prune``), in batches; recent rows, undelivered outbox rows, alerts still
being acted on and findings of suspended keys stay; each prune is audited.
Both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from keyops import audit
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle.retention import prune_history
from keyops.scheduler import Jobs

OLD = timedelta(days=400)
RECENT = timedelta(days=2)


def _issue(app: App, name: str) -> str:
    return app.keys.issue(name, owner="team", profile="interactive", policy="standard", actor="test").key.id


def _seed(app: App, *, old_findings: int = 2) -> dict[str, str]:
    """Old and recent rows of every pruned kind; returns the ids to check."""
    now = utcnow()
    active = _issue(app, "team/active")
    suspended = _issue(app, "team/suspended")
    app.keys.suspend("team/suspended", actor="test", reason="finding under review")
    ids: dict[str, str] = {}
    with app.sessions.begin() as session:

        def alert(tag: str, age: timedelta, verdict: str = "handled") -> None:
            row = models.InboundAlert(source="standard", delivery_id=tag, received_at=now - age, verdict=verdict)
            session.add(row)
            session.flush()
            ids[tag] = row.id

        alert("alert-old", OLD)
        alert("alert-recent", RECENT)
        alert("alert-old-acting", OLD, verdict="acting")

        def finding(tag: str, key_id: str | None, age: timedelta) -> None:
            row = models.Finding(key_id=key_id, detector="volume", severity="high", summary=tag, created_at=now - age)
            session.add(row)
            session.flush()
            ids[tag] = row.id

        for i in range(old_findings):
            finding(f"finding-old-{i}", active, OLD)
        finding("finding-old-no-key", None, OLD)
        finding("finding-recent", active, RECENT)
        finding("finding-old-suspended", suspended, OLD)

        def delivery(tag: str, status: str, age: timedelta) -> None:
            event = models.OutboxEvent(
                type="finding.created", key_id=active, payload={"tag": tag}, created_at=now - age
            )
            session.add(event)
            session.flush()
            row = models.OutboxDelivery(
                event_seq=event.seq, sink="hook", status=status, next_attempt_at=now - age,
                delivered_at=now - age if status == "delivered" else None,
            )  # fmt: skip
            session.add(row)
            session.flush()
            ids[tag] = row.id
            ids[f"{tag}-event"] = event.id

        delivery("outbox-old-delivered", "delivered", OLD)
        delivery("outbox-recent-delivered", "delivered", RECENT)
        delivery("outbox-old-pending", "pending", OLD)
        delivery("outbox-old-dead", "dead", OLD)
    return ids


def _left(app: App) -> dict[str, set[str]]:
    with app.sessions() as session:
        return {
            "alerts": set(session.execute(select(models.InboundAlert.delivery_id)).scalars()),
            "findings": set(session.execute(select(models.Finding.summary)).scalars()),
            "deliveries": {
                str(p.get("tag"))
                for p in session.execute(
                    select(models.OutboxEvent.payload).join(
                        models.OutboxDelivery, models.OutboxDelivery.event_seq == models.OutboxEvent.seq
                    )
                ).scalars()
            },
            # Events keyops emitted itself while seeding (key.suspended) carry no tag.
            "events": {
                str(p["tag"]) for p in session.execute(select(models.OutboxEvent.payload)).scalars() if "tag" in p
            },
        }


KEPT = {
    "alerts": {"alert-recent", "alert-old-acting"},
    "findings": {"finding-recent", "finding-old-suspended"},
    "deliveries": {"outbox-recent-delivered", "outbox-old-pending", "outbox-old-dead"},
    "events": {"outbox-recent-delivered", "outbox-old-pending", "outbox-old-dead"},
}


@pytest.fixture
def small_batches(env: dict[str, str]) -> Iterator[App]:
    application = build(load_settings(env={**env, "KEYOPS_RETENTION_BATCH_SIZE": "10"}))
    try:
        yield application
    finally:
        application.close()


def test_prune_job_deletes_old_history_in_batches_and_keeps_the_rest(small_batches: App) -> None:
    app = small_batches
    _seed(app, old_findings=25)  # three batches of 10
    Jobs(app, "worker-1").prune()
    assert _left(app) == KEPT
    with app.sessions() as session:
        (event,) = session.execute(
            select(models.AuditEvent).where(models.AuditEvent.action == "retention.pruned")
        ).scalars().all()  # fmt: skip
        assert event.actor == "keyops:scheduler:worker-1"
        assert event.details["deleted"] == {
            "inbound_alerts": 1, "findings": 26, "outbox_deliveries": 1, "outbox_events": 1,
        }  # fmt: skip
        assert audit.verify(session).ok
    # A second run finds nothing and audits nothing.
    Jobs(app, "worker-1").prune()
    with app.sessions() as session:
        count = select(func.count()).where(models.AuditEvent.action == "retention.pruned")
        assert session.execute(count).scalar() == 1


def test_forever_keeps_that_history(env: dict[str, str]) -> None:
    app = build(
        load_settings(env={**env, "KEYOPS_RETENTION_FINDINGS": "forever", "KEYOPS_RETENTION_INBOUND_ALERTS": "0"})
    )
    try:
        _seed(app)
        report = prune_history(app.engine, app.sessions, app.settings.retention, actor="test")
        assert report is not None
        assert report.forever == ["inbound_alerts", "findings"]
        assert set(report.counts) == {"outbox_deliveries", "outbox_events"}
        left = _left(app)
        assert "alert-old" in left["alerts"] and "finding-old-0" in left["findings"]
        assert left["deliveries"] == KEPT["deliveries"]
    finally:
        app.close()


def test_cli_prune_dry_run_counts_then_prune_deletes(app: App, cli) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    dry = cli("db", "prune", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert "inbound_alerts: would delete 1" in dry.stdout
    assert "findings: would delete 3" in dry.stdout
    assert "outbox_deliveries: would delete 1" in dry.stdout
    assert _left(app)["findings"] >= {"finding-old-0", "finding-old-1", "finding-old-no-key"}
    done = cli("db", "prune")
    assert done.code == 0, done.stderr
    assert "findings: deleted 3" in done.stdout and "outbox_events: deleted 1" in done.stdout, done.stdout
    assert _left(app) == KEPT
    with app.sessions() as session:
        actors = session.execute(
            select(models.AuditEvent.actor).where(models.AuditEvent.action == "retention.pruned")
        ).scalars().all()  # fmt: skip
        assert len(actors) == 1 and actors[0].startswith("local:")


def test_bad_retention_setting_is_one_line_and_nothing_runs(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("db", "prune", extra_env={"KEYOPS_RETENTION_FINDINGS": "a year"})
    assert result.code != 0
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "retention.findings" in lines[0] and "forever" in lines[0], result.stderr
    short = cli("db", "prune", extra_env={"KEYOPS_RETENTION_INBOUND_ALERTS": "10m"})
    assert short.code != 0 and "retention.inbound_alerts must be at least 1d" in short.stderr, short.stderr


def test_a_second_replica_skips_while_one_prunes(app: App) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's; SQLite has one host and one writer")
    _seed(app)
    from keyops.lifecycle import retention

    with app.engine.connect() as other:
        assert other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": retention._LOCK_KEY}).scalar()
        assert prune_history(app.engine, app.sessions, app.settings.retention, actor="replica-2") is None
        assert "alert-old" in _left(app)["alerts"]
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": retention._LOCK_KEY})
    report = prune_history(app.engine, app.sessions, app.settings.retention, actor="replica-2")
    assert report is not None and report.counts["inbound_alerts"] == 1
