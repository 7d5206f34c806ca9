"""``keyops serve`` as real processes, driven over HTTP and by the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.inventory.types import utcnow
from tests.e2e.serving import Served
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

FAST = {
    "KEYOPS_LOG_LEVEL": "INFO",
    "KEYOPS_SCHEDULER_ROTATE_DUE_EVERY": "1s",
    "KEYOPS_SCHEDULER_RETIRE_GRACE_EVERY": "1s",
    "KEYOPS_SCHEDULER_RESUME_EVERY": "1s",
    "KEYOPS_SERVER_SHUTDOWN_TIMEOUT": "6s",
}


@pytest.fixture
def servers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**extra: str) -> Served:
        server = Served(env, tmp_path, extra_env={**FAST, **extra})
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture
def inventory(env: dict[str, str]) -> Iterator[App]:
    application = build(load_settings(env=env))
    yield application
    application.close()


def _token(cli: Any) -> str:
    result = cli("tokens", "create", "gateway", "--scopes", "verify,usage", "--json")
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"name", "token", "scopes"}
    return str(doc["token"])


def _material(app: App, uri: str) -> str:
    dest, store = app.stores.resolve(uri)
    stored = store.read(dest)
    assert stored is not None
    return str(stored.material)


def test_issue_verify_rotate_expire_revoke(cli: Any, servers: Callable[..., Served], inventory: App) -> None:
    token = _token(cli)
    issued = cli(
        "keys", "issue", "team/e2e", "--owner", "team", "--profile", "batch", "--dest", "file:team-e2e", "--json"
    )
    assert issued.code == 0, issued.stderr
    old = json.loads(issued.stdout)["key"]
    server = servers()
    assert server.verify(token, old)["code"] == "VALID"

    rotated = cli("keys", "rotate", "team/e2e", "--grace", "4s")
    assert rotated.code == 0, rotated.stderr
    new = _material(inventory, "file:team-e2e")
    assert new != old
    answer = wait_for(lambda: (a := server.verify(token, new))["code"] == "VALID" and a, timeout=2, what="new VALID")
    assert answer["version"] == 2 and answer["version_state"] == "current"
    during = server.verify(token, old)
    assert during["code"] == "VALID" and during["version_state"] == "previous" and during["grace_ends_at"]

    wait_for(lambda: server.verify(token, old)["code"] == "EXPIRED", timeout=10, interval=0.1, what="old key EXPIRED")
    assert server.verify(token, new)["code"] == "VALID"

    revoked = cli("keys", "revoke", "team/e2e", "--reason", "e2e")
    assert revoked.code == 0, revoked.stderr
    wait_for(lambda: server.verify(token, new)["code"] == "REVOKED", timeout=1.5, what="REVOKED within 1 s")
    assert server.verify(token, old)["code"] in ("REVOKED", "EXPIRED")
    assert server.terminate() < 8


def _issue_many(app: App, count: int, prefix: str) -> list[str]:
    ids = []
    for i in range(count):
        issued = app.keys.issue(
            f"{prefix}/k{i:03d}", owner="team", profile="batch", policy="standard", actor="test",
            destinations=[f"file:{prefix}-{i:03d}"],
        )  # fmt: skip
        ids.append(issued.key.id)
    return ids


def _make_due(app: App, ids: list[str]) -> None:
    with app.engine.begin() as conn:
        conn.execute(
            update(models.Key).where(models.Key.id.in_(ids)).values(next_rotation_at=utcnow() - timedelta(seconds=1))
        )


def _finished_per_key(app: App) -> dict[str, int]:
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(models.Rotation.key_id, func.count())
            .where(models.Rotation.status == "finished")
            .group_by(models.Rotation.key_id)
        ).all()
    return {k: n for k, n in rows}


def _assert_rotated_once(app: App, ids: list[str]) -> None:
    """Exactly one finished rotation per key (audit and rotation rows), none
    left unfinished, exactly one current version each."""
    with app.engine.connect() as conn:
        assert _finished_per_key(app) == dict.fromkeys(ids, 1)
        unfinished = conn.execute(
            select(func.count()).where(models.Rotation.status.in_(("running", "failed")))
        ).scalar_one()
        assert unfinished == 0
        finished = (
            conn.execute(select(models.AuditEvent.key_id).where(models.AuditEvent.action == "rotation.finished"))
            .scalars()
            .all()
        )
        assert sorted(finished) == sorted(ids)
        currents = conn.execute(
            select(models.KeyVersion.key_id, func.count())
            .where(models.KeyVersion.state == "current")
            .group_by(models.KeyVersion.key_id)
        ).all()
        assert {k: n for k, n in currents} == dict.fromkeys(ids, 1)
        versions = conn.execute(select(func.count()).select_from(models.KeyVersion)).scalar_one()
        assert versions == 2 * len(ids)


@pytest.mark.postgres
def test_three_replicas_rotate_each_due_key_once(db_url: str, servers: Callable[..., Served], inventory: App) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several replicas share PostgreSQL")
    ids = _issue_many(inventory, 300, "burst")
    replicas = [servers(KEYOPS_SCHEDULER_WORKER_ID=f"replica-{n}") for n in range(3)]
    _make_due(inventory, ids)
    wait_for(lambda: len(_finished_per_key(inventory)) == 300, timeout=120, interval=0.2, what="300 rotations")
    _assert_rotated_once(inventory, ids)
    for replica in replicas:
        assert replica.terminate() < 10


@pytest.mark.postgres
def test_cli_revocation_reaches_two_replicas_within_a_second(
    db_url: str, cli: Any, servers: Callable[..., Served], inventory: App
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("two replicas share PostgreSQL")
    token = _token(cli)
    keys = [
        inventory.keys.issue(f"team/rev{i}", owner="t", profile="batch", policy="standard", actor="t").plaintext
        for i in range(5)
    ]
    replicas = [servers(), servers()]
    latencies = []
    for i, key in enumerate(keys):
        assert all(r.verify(token, key)["code"] == "VALID" for r in replicas)
        result = cli("keys", "revoke", f"team/rev{i}")
        assert result.code == 0, result.stderr
        revoked_at = inventory.keys.show(f"team/rev{i}").versions[0].revoked_at
        assert revoked_at is not None
        for replica in replicas:
            wait_for(lambda r=replica, k=key: r.verify(token, k)["code"] == "REVOKED", timeout=2, interval=0.005)
        latencies.append(time.time() - revoked_at.timestamp())
    assert max(latencies) < 1.0 + 0.5, latencies  # measured from revoked_at; includes the CLI's exit


def test_sigterm_during_rotation_burst_then_restart_finishes(servers: Callable[..., Served], inventory: App) -> None:
    ids = _issue_many(inventory, 60, "stop")
    server = servers()
    _make_due(inventory, ids)
    wait_for(lambda: len(_finished_per_key(inventory)) >= 5, timeout=30, interval=0.01, what="rotations under way")
    took = server.terminate()
    assert took < 6 + 2, f"stopped in {took:.1f}s, bound is 6s"
    server = servers()
    wait_for(lambda: len(_finished_per_key(inventory)) == 60, timeout=90, interval=0.2, what="every rotation done")
    _assert_rotated_once(inventory, ids)
    assert server.terminate() < 8
