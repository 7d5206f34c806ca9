"""A rotation that fails for good gives up its pending version: verify
refuses that version's key while the old current key keeps working, the
audit log says so, and a later resume mints fresh material. Real OpenBao
(sealed for the outage), a real file store, both databases, the HTTP API
in-process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from keyops import audit
from keyops.api.app import create_app
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.lifecycle.tokens import TokenService
from keyops.stores.base import Stage
from tests.support.rotation_checks import assert_consistent
from tests.support.servers import OpenBaoServer
from tests.support.waiting import wait_for


@pytest.fixture
def rapp(env: dict[str, str], vault_env: dict[str, str]) -> Iterator[App]:
    settings = {
        **env,
        **vault_env,
        "KEYOPS_ROTATION_MAX_ATTEMPTS": "2",
        "KEYOPS_ROTATION_BACKOFF_INITIAL": "1s",
        "KEYOPS_ROTATION_BACKOFF_MAX": "1s",
        # The first failure is final: no automatic retry is left.
        "KEYOPS_ROTATION_AUTOMATIC_RETRIES": "0",
    }
    application = build(load_settings(env=settings))
    try:
        yield application
    finally:
        application.close()


def _material(app: App, uri: str, stage: Stage) -> str | None:
    dest, store = app.stores.resolve(uri)
    found = store.read(dest, stage)
    return None if found is None else found.material


def _verify(client: TestClient, token: str, key: str) -> dict[str, Any]:
    response = client.post(
        "/v1/keys/verify", content=orjson.dumps({"key": key}), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_pending_version_of_a_rotation_failed_for_good_stops_verifying(
    rapp: App, openbao: OpenBaoServer, store_prefix: str
) -> None:
    file_uri, vault_uri = f"file:{store_prefix}pay-failed", f"vault:secret/{store_prefix}pay/failed"
    rapp.keys.issue(
        "pay/failed", owner="payments", profile="interactive", policy="standard", actor="test",
        destinations=[file_uri, vault_uri],
    )  # fmt: skip
    old = _material(rapp, file_uri, Stage.CURRENT)
    assert old is not None
    token = TokenService(rapp.sessions).create("gateway", "verify", actor="test")[1]

    # The file store takes the pending version; then Vault is down for good.
    pending: list[str] = []

    def capture(rotation_id: str, label: str) -> None:
        if label == f"pending:{file_uri}":
            material = _material(rapp, file_uri, Stage.PENDING)
            assert material is not None
            pending.append(material)

    with TestClient(create_app(rapp, worker_id="test")) as client:
        assert _verify(client, token, old)["code"] == "VALID"
        rapp.rotations.checkpoint = capture
        with openbao.outage():
            failed = rapp.rotations.rotate("pay/failed", actor="test", reason="outage")
        rapp.rotations.checkpoint = None
        assert failed.status == "failed" and failed.next_attempt_at is None, failed
        (new,) = pending

        # The new key is refused (the cache hears of the change), the old one works.
        answer = wait_for(
            lambda: (a := _verify(client, token, new))["code"] != "VALID" and a, timeout=5, what="new key refused"
        )
        assert answer["valid"] is False and answer["code"] == "REVOKED" and answer["version"] == 2, answer
        assert _verify(client, token, old)["code"] == "VALID"

        # Audited, and the store's staging copy is gone.
        with rapp.sessions() as session:
            events = session.execute(
                select(models.AuditEvent).where(models.AuditEvent.action == "rotation.pending_discarded")
            ).scalars().all()  # fmt: skip
            assert [(e.key_name, e.details["version"]) for e in events] == [("pay/failed", 2)]
            assert audit.verify(session).ok
            version = session.execute(
                select(models.KeyVersion).join(models.Key).where(models.Key.name == "pay/failed",
                                                                 models.KeyVersion.number == 2)
            ).scalar_one()  # fmt: skip
            assert version.state == "revoked" and version.revoked_at is not None
        assert _material(rapp, file_uri, Stage.PENDING) is None
        with rapp.sessions() as session:
            summary = session.execute(
                select(models.Finding.summary).where(models.Finding.detector == "rotation")
            ).scalar_one()  # fmt: skip
        assert "pending version 2 is revoked" in summary and "failed at step material_created" in summary, summary

        # A person resumes once Vault is back: fresh material, not the discarded one.
        (resumed,) = rapp.rotations.resume(include_failed=True)
        assert resumed.ok and resumed.rotation_id == failed.rotation_id, resumed
        assert_consistent(rapp, "pay/failed", previous_number=1)
        current = _material(rapp, file_uri, Stage.CURRENT)
        assert current is not None and current not in (old, new)
        assert _verify(client, token, new)["code"] == "REVOKED"
        assert wait_for(lambda: _verify(client, token, current)["code"] == "VALID", timeout=5, what="fresh key valid")


def test_resume_job_discards_the_pending_version_a_rotation_failed_for_good_still_holds(
    env: dict[str, str], vault_env: dict[str, str], openbao: OpenBaoServer, store_prefix: str
) -> None:
    """A rotation failed for good before this rule existed (an upgraded
    inventory) still holds a pending version: the daemon's resume job
    revokes it, once."""
    settings = {**env, **vault_env, "KEYOPS_ROTATION_MAX_ATTEMPTS": "1", "KEYOPS_ROTATION_AUTOMATIC_RETRIES": "1"}
    app = build(load_settings(env=settings))
    try:
        vault_uri = f"vault:secret/{store_prefix}pay/legacy"
        app.keys.issue(
            "pay/legacy", owner="payments", profile="interactive", policy="standard", actor="test",
            destinations=[vault_uri],
        )  # fmt: skip
        with openbao.outage():
            failed = app.rotations.rotate("pay/legacy", actor="test")
        assert failed.status == "failed" and failed.next_attempt_at is not None
        # An automatic retry is still due, so the pending version is kept ...
        app.rotations.resume(now=failed.next_attempt_at - timedelta(seconds=5))
        assert _version_state(app, "pay/legacy", 2) == "pending"
        # ... until the rotation has none left, as an older keyops left it.
        with app.engine.begin() as conn:
            conn.execute(
                update(models.Rotation).where(models.Rotation.id == failed.rotation_id).values(next_attempt_at=None)
            )
        assert app.rotations.resume() == []
        assert _version_state(app, "pay/legacy", 2) == "revoked"
        assert app.rotations.show(failed.rotation_id).status == "failed"
        with app.sessions() as session:
            actions = session.execute(
                select(models.AuditEvent.action).where(models.AuditEvent.key_name == "pay/legacy")
            ).scalars().all()  # fmt: skip
        assert actions.count("rotation.pending_discarded") == 1
        app.rotations.resume()
        with app.sessions() as session:
            again = session.execute(
                select(models.AuditEvent.action).where(models.AuditEvent.action == "rotation.pending_discarded")
            ).scalars().all()  # fmt: skip
        assert len(again) == 1
    finally:
        app.close()


def _version_state(app: App, key_name: str, number: int) -> str:
    with app.sessions() as session:
        return str(
            session.execute(
                select(models.KeyVersion.state)
                .join(models.Key)
                .where(models.Key.name == key_name, models.KeyVersion.number == number)
            ).scalar_one()
        )
