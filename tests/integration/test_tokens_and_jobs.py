"""API tokens (service and CLI) and the scheduler's own jobs (expiry, pruning,
lease hand-back) against real databases."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from keyops.api.metrics import Metrics
from keyops.bootstrap import App
from keyops.errors import DuplicateNameError, InvalidInputError, InvalidStateError, NotFoundError
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.lifecycle.expiry import expire_due
from keyops.lifecycle.tokens import TokenService, hash_token
from keyops.scheduler import Jobs, Scheduler


def test_tokens_cli_round_trip(cli: Any, app: App) -> None:
    created = cli("tokens", "create", "gateway-eu", "--scopes", "verify,usage,alerts:alertmanager", "--json")
    assert created.code == 0, created.stderr
    doc = json.loads(created.stdout)
    assert doc["name"] == "gateway-eu" and doc["scopes"] == ["alerts:alertmanager", "usage", "verify"]
    with app.sessions() as session:
        row = session.execute(select(models.ApiToken)).scalar_one()
        assert row.token_hash == hash_token(doc["token"]) and doc["token"] not in row.display_prefix
    listed = cli("tokens", "list", "--json")
    assert json.loads(listed.stdout)[0]["name"] == "gateway-eu" and doc["token"] not in listed.stdout
    bad = cli("tokens", "create", "x", "--scopes", "verify,root")
    assert bad.code == 6 and "unknown scope 'root'" in bad.stderr


def test_token_service_errors_change_nothing(app: App) -> None:
    tokens = TokenService(app.sessions)
    tokens.create("gw", "verify", actor="t")
    with pytest.raises(DuplicateNameError):
        tokens.create("gw", "usage", actor="t")
    for name, scopes in (("Bad Name", "verify"), ("ok", ""), ("ok", "alerts:"), ("ok", "verify,admin2")):
        with pytest.raises(InvalidInputError):
            tokens.create(name, scopes, actor="t")
    with pytest.raises(NotFoundError):
        tokens.revoke("nope", actor="t")
    tokens.revoke("gw", actor="t")
    with pytest.raises(InvalidStateError):
        tokens.revoke("gw", actor="t")
    assert [t.name for t in tokens.list()] == ["gw"]
    with app.sessions() as session:
        actions = session.execute(select(models.AuditEvent.action).order_by(models.AuditEvent.seq)).scalars().all()
    assert [a for a in actions if a.startswith("token.")] == ["token.created", "token.revoked"]


def test_expire_job_ends_keys_past_their_end_date(app: App) -> None:
    app.keys.issue("team/ends", owner="t", profile="batch", policy="standard", actor="t",
                   expires_at=utcnow() + timedelta(hours=1))  # fmt: skip
    app.keys.issue("team/stays", owner="t", profile="batch", policy="standard", actor="t")
    assert expire_due(app.sessions, actor="test") == 0
    with app.sessions.begin() as session:
        key = session.execute(select(models.Key).where(models.Key.name == "team/ends")).scalar_one()
        key.expires_at = utcnow() - timedelta(seconds=1)
    assert expire_due(app.sessions, actor="test") == 1
    assert expire_due(app.sessions, actor="test") == 0
    assert app.keys.show("team/ends").state == "expired"
    assert app.keys.show("team/stays").state == "active"
    with app.sessions() as session:
        assert session.execute(select(func.count()).where(models.AuditEvent.action == "key.expired")).scalar_one() == 1


def test_prune_and_lease_release(app: App) -> None:
    key_id = app.keys.issue("team/p", owner="t", profile="batch", policy="standard", actor="t").key.id
    old = utcnow() - timedelta(days=400)
    with app.sessions.begin() as session:
        session.add(models.UsageMinute(key_id=key_id, minute=old.replace(second=0, microsecond=0), requests=1))
        session.add(models.UsageMinute(key_id=key_id, minute=utcnow().replace(second=0, microsecond=0), requests=1))
        session.add(models.Rotation(key_id=key_id, status="running", lease_owner="me",
                                    lease_expires_at=utcnow() + timedelta(minutes=5)))  # fmt: skip
    jobs = Jobs(app, "me")
    jobs.prune()
    assert jobs.release_leases() == 1
    with app.sessions() as session:
        assert session.execute(select(func.count()).select_from(models.UsageMinute)).scalar_one() == 1
        rotation = session.execute(select(models.Rotation)).scalar_one()
        assert rotation.lease_owner is None and rotation.lease_expires_at <= utcnow()


def test_scheduler_runs_jobs_and_stops(app: App) -> None:
    metrics = Metrics()
    scheduler = Scheduler(app, worker_id="t", metrics=metrics, stop_timeout=5)
    scheduler.start()
    try:
        from tests.support.waiting import wait_for

        wait_for(lambda: {"rotate_due", "expire_keys", "resume_stuck"} <= set(metrics.job_durations), timeout=10)
    finally:
        scheduler.stop()
    assert metrics.job_failures.get("expire_keys") == 0
    assert scheduler.running_jobs() == []
