"""A failed rotation is not left blocking its key's schedule: the daemon's
resume job retries it once its automatic retry time has come (later after
each failure), then leaves it to a person; real OpenBao, both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.inventory.types import utcnow
from tests.support.rotation_checks import assert_consistent
from tests.support.servers import OpenBaoServer


@pytest.fixture
def rapp(env: dict[str, str], vault_env: dict[str, str]) -> Iterator[App]:
    settings = {
        **env,
        **vault_env,
        "KEYOPS_ROTATION_MAX_ATTEMPTS": "2",
        "KEYOPS_ROTATION_BACKOFF_INITIAL": "1s",
        "KEYOPS_ROTATION_BACKOFF_MAX": "1s",
        "KEYOPS_ROTATION_RETRY_FAILED_AFTER": "10m",
        "KEYOPS_ROTATION_AUTOMATIC_RETRIES": "1",
    }
    application = build(load_settings(env=settings))
    try:
        yield application
    finally:
        application.close()


def _issue(app: App, name: str, prefix: str) -> None:
    destination = f"vault:secret/{prefix}{name}"
    app.keys.issue(
        name, owner="payments", profile="interactive", policy="standard", actor="test", destinations=[destination]
    )


def _findings(app: App) -> list[str]:
    with app.sessions() as session:
        rows = session.execute(
            select(models.Finding.summary).where(models.Finding.detector == "rotation").order_by(models.Finding.id)
        )
        return list(rows.scalars())


def test_failed_rotation_is_retried_by_the_daemon_once_its_time_comes(
    rapp: App, openbao: OpenBaoServer, store_prefix: str
) -> None:
    _issue(rapp, "pay/retry", store_prefix)
    with openbao.outage():
        failed = rapp.rotations.rotate("pay/retry", actor="test", reason="outage")
    assert failed.status == "failed"
    retry_at = failed.next_attempt_at
    assert retry_at is not None
    wait = (retry_at - utcnow()).total_seconds()
    assert 4 * 60 <= wait <= 10 * 60, wait  # 10m with jitter (at least half)
    assert "retries it at" in _findings(rapp)[-1]
    assert rapp.rotations.show(failed.rotation_id).to_document()["next_attempt_at"] is not None

    # Before its time, the daemon's resume job leaves it alone ...
    assert rapp.rotations.resume(now=retry_at - timedelta(seconds=5)) == []
    assert rapp.rotations.show(failed.rotation_id).status == "failed"
    # ... after it, the job finishes it (the store is back).
    (retried,) = rapp.rotations.resume(now=retry_at + timedelta(seconds=1))
    assert retried.rotation_id == failed.rotation_id and retried.ok, retried
    assert retried.next_attempt_at is None
    assert_consistent(rapp, "pay/retry", previous_number=1)
    # The key's schedule runs again.
    assert rapp.keys.show("pay/retry").next_rotation_at is not None
    with rapp.sessions() as session:
        reasons = session.execute(
            select(models.AuditEvent.reason).where(models.AuditEvent.action == "rotation.resumed")
        ).scalars()
        assert "automatic retry after a failure" in list(reasons)


def test_after_the_last_automatic_retry_a_person_must_resume(
    rapp: App, openbao: OpenBaoServer, store_prefix: str
) -> None:
    _issue(rapp, "pay/stuck", store_prefix)
    with openbao.outage():
        first = rapp.rotations.rotate("pay/stuck", actor="test")
        assert first.next_attempt_at is not None
        (second,) = rapp.rotations.resume(now=first.next_attempt_at + timedelta(seconds=1))
        assert second.status == "failed" and second.rotation_id == first.rotation_id
    # One automatic retry was allowed and used: nothing is scheduled, and the
    # finding says what to do.
    assert second.next_attempt_at is None
    assert "run keyops rotations resume" in _findings(rapp)[-1]
    assert rapp.rotations.resume(now=utcnow() + timedelta(days=30)) == []
    # A person resumes it.
    (resumed,) = rapp.rotations.resume(include_failed=True)
    assert resumed.ok and resumed.rotation_id == first.rotation_id
    assert_consistent(rapp, "pay/stuck", previous_number=1)
