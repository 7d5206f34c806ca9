"""The rotation engine against real stores and both databases: outages,
exactly-once under competing replicas, the consumer's view during rotations,
grace periods and usage-aware retirement."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from keyops import audit
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.domain.keyformat import hash_key
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.stores.base import Stage
from tests.support.rotation_checks import accepted_hashes, assert_consistent
from tests.support.servers import MotoServer, OpenBaoServer

FAST_RETRIES = {
    "KEYOPS_ROTATION_MAX_ATTEMPTS": "3",
    "KEYOPS_ROTATION_BACKOFF_INITIAL": "1s",
    "KEYOPS_ROTATION_BACKOFF_MAX": "1s",
}


@pytest.fixture
def rot_env(env: dict[str, str], vault_env: dict[str, str], aws_env: dict[str, str]) -> dict[str, str]:
    return {**env, **vault_env, **aws_env, **FAST_RETRIES}


@pytest.fixture
def rapp(rot_env: dict[str, str]) -> Iterator[App]:
    application = build(load_settings(env=rot_env))
    try:
        yield application
    finally:
        application.close()


def _issue(app: App, name: str, prefix: str, policy: str = "standard") -> tuple[str, str, str]:
    vault_uri, aws_uri = f"vault:secret/{prefix}{name}", f"aws-sm:{prefix}{name}"
    issued = app.keys.issue(
        name, owner="payments", profile="interactive", policy=policy, actor="test", destinations=[vault_uri, aws_uri]
    )
    return issued.plaintext, vault_uri, aws_uri


def _served(app: App, uri: str, stage: Stage = Stage.CURRENT) -> str | None:
    dest, store = app.stores.resolve(uri)
    found = store.read(dest, stage)
    return None if found is None else found.material


def _actions(app: App) -> list[str]:
    with app.sessions() as session:
        return list(session.execute(select(models.AuditEvent.action).order_by(models.AuditEvent.seq)).scalars())


@pytest.mark.parametrize("outage", ["aws-down", "vault-503"])
def test_store_outage_fails_loudly_within_budget_then_resumes(
    rapp: App,
    store_prefix: str,
    moto_server: MotoServer,
    openbao: OpenBaoServer,
    outage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, vault_uri, aws_uri = _issue(rapp, "pay/out", store_prefix)
    started = time.monotonic()
    with moto_server.outage() if outage == "aws-down" else openbao.outage():
        result = rapp.rotations.rotate("pay/out", actor="test", reason="outage")
        elapsed = time.monotonic() - started
        assert result.status == "failed", result
        assert elapsed < 30, elapsed  # 3 attempts with ~1s backoff, not minutes
        assert ("aws-sm:" if outage == "aws-down" else "vault:") in result.last_error
    # Loud: an audit event, a finding, an error log line.
    assert "rotation.failed" in _actions(rapp)
    with rapp.sessions() as session:
        finding = session.execute(select(models.Finding).where(models.Finding.detector == "rotation")).scalar_one()
        assert finding.severity == "high" and result.rotation_id in str(finding.evidence)
    assert any(r.levelname == "ERROR" and "rotation failed" in r.getMessage() for r in caplog.records)
    # The current key keeps working: still current, still served everywhere.
    view = rapp.keys.show("pay/out")
    assert view.current_version is not None and view.current_version.number == 1
    assert _served(rapp, vault_uri) == first and _served(rapp, aws_uri) == first
    # Back up: resume completes it.
    (resumed,) = rapp.rotations.resume(include_failed=True)
    assert resumed.ok and resumed.rotation_id == result.rotation_id
    assert_consistent(rapp, "pay/out", previous_number=1)
    assert _served(rapp, vault_uri, Stage.PREVIOUS) == first


def test_each_due_rotation_runs_exactly_once_across_replicas(rot_env: dict[str, str], store_prefix: str) -> None:
    replicas = [build(load_settings(env=rot_env)) for _ in range(3)]
    app = replicas[0]
    try:
        names = [f"fleet/key-{i}" for i in range(12)]
        for name in names:
            app.keys.issue(
                name,
                owner="fleet",
                profile="interactive",
                policy="short",
                actor="test",
                destinations=[f"vault:secret/{store_prefix}{name}"],
            )
        with app.sessions.begin() as session:
            session.execute(update(models.Key).values(next_rotation_at=utcnow() - timedelta(seconds=1)))
        barrier = threading.Barrier(len(replicas))
        results: list[list[str]] = [[] for _ in replicas]

        def run(index: int) -> None:
            barrier.wait()
            for _ in range(3):
                batch = replicas[index].rotations.rotate_due(worker_id=f"replica-{index}", limit=5)
                results[index].extend(r.key_name for r in batch if r.ok)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(replicas))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        rotated = [name for batch in results for name in batch]
        assert sorted(rotated) == sorted(names)  # every key once, none twice
        with app.sessions() as session:
            counts = session.execute(select(models.Rotation.key_id, models.Rotation.status)).all()
        assert len(counts) == len(names) and {s for _, s in counts} == {"finished"}
        for name in names:
            assert_consistent(app, name, previous_number=1)
        assert app.rotations.rotate_due(limit=100) == []  # nothing due any more
    finally:
        for replica in replicas:
            replica.close()


def test_consumers_never_see_a_rejected_key(rapp: App, store_prefix: str) -> None:
    _, vault_uri, aws_uri = _issue(rapp, "pay/view", store_prefix)
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def consumer() -> None:
        while not stop.is_set():
            for uri in (vault_uri, aws_uri):
                material = _served(rapp, uri)
                if material is None or hash_key(material) not in accepted_hashes(rapp, "pay/view"):
                    problems.append(f"{uri} served a key verify rejects")
                reads[0] += 1

    reader = threading.Thread(target=consumer)
    reader.start()
    try:
        for _ in range(6):
            result = rapp.rotations.rotate("pay/view", grace_seconds=2, actor="test", reason="loop")
            assert result.ok, result.last_error
            rapp.rotations.retire_ended_grace(utcnow() + timedelta(seconds=3))
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not problems, problems[:3]
    assert reads[0] > 10


def test_grace_zero_retires_old_material_everywhere_at_once(rapp: App, store_prefix: str) -> None:
    first, vault_uri, aws_uri = _issue(rapp, "pay/leak", store_prefix)
    assert rapp.rotations.rotate("pay/leak", actor="test", reason="rotate").ok
    result = rapp.rotations.rotate("pay/leak", grace_seconds=0, actor="detector:x", reason="leaked", trigger="detector")
    assert result.ok
    states = {v.number: v.state for v in rapp.keys.show("pay/leak").versions}
    assert states == {1: "retired", 2: "retired", 3: "current"}
    assert first not in accepted_hashes(rapp, "pay/leak")
    for uri in (vault_uri, aws_uri):
        old = _served(rapp, uri, Stage.PREVIOUS)
        assert old is None or hash_key(old) not in {hash_key(first)}
    assert_consistent(rapp, "pay/leak")


def test_grace_and_usage_aware_retirement(rapp: App, store_prefix: str) -> None:
    _issue(rapp, "pay/idle", store_prefix, policy="usage-aware")
    _issue(rapp, "pay/busy", store_prefix, policy="usage-aware")
    _issue(rapp, "pay/keyused", store_prefix, policy="usage-aware")
    for name in ("pay/idle", "pay/busy", "pay/keyused"):
        assert rapp.rotations.rotate(name, actor="test", reason="r").ok
    now = utcnow()
    with rapp.sessions.begin() as session:
        busy = session.execute(
            select(models.KeyVersion)
            .join(models.Key)
            .where(models.Key.name == "pay/busy", models.KeyVersion.number == 1)
        ).scalar_one()
        busy.last_used_at = now + timedelta(minutes=25)  # verified traffic 25 minutes after the rotation
        # Only key-level usage known: either version may have been used, so keep it.
        keyused = session.execute(select(models.Key).where(models.Key.name == "pay/keyused")).scalar_one()
        keyused.last_used_at = now + timedelta(minutes=25)
    retired = rapp.rotations.retire_ended_grace(now + timedelta(minutes=31))
    assert [(r.key_name, r.version, r.why) for r in retired] == [("pay/idle", 1, "idle")]
    assert rapp.rotations.retire_ended_grace(now + timedelta(minutes=50)) == []  # busy: used 25 minutes ago
    late = rapp.rotations.retire_ended_grace(now + timedelta(hours=25))  # grace over: retired regardless
    assert sorted((r.key_name, r.why) for r in late) == [("pay/busy", "grace ended"), ("pay/keyused", "grace ended")]
    assert_consistent(rapp, "pay/idle")
    assert_consistent(rapp, "pay/busy")
    assert "key.version_retired" in _actions(rapp)
    with rapp.sessions() as session:
        assert audit.verify(session).ok


def test_concurrent_manual_rotation_of_one_key_is_refused(rapp: App, store_prefix: str) -> None:
    _issue(rapp, "pay/dup", store_prefix)
    seen: list[str] = []

    def checkpoint(rotation_id: str, label: str) -> None:
        if label == "tested" and not seen:
            seen.append(label)
            from keyops.errors import ConflictError

            with pytest.raises(ConflictError, match="already being rotated"):
                rapp.rotations.rotate("pay/dup", actor="test", reason="second")

    rapp.rotations.checkpoint = checkpoint
    assert rapp.rotations.rotate("pay/dup", actor="test", reason="first").ok
    assert seen
    assert_consistent(rapp, "pay/dup", previous_number=1)


@pytest.mark.parametrize("stolen_at", ["pending:FIRST", "tested", "promoted:FIRST"])
def test_a_worker_that_lost_its_lease_stops_at_its_next_step(app: App, stolen_at: str) -> None:
    """Another replica took the rotation over (our lease had expired) right
    after one of the progress-only steps: this worker must record nothing
    more and move the rotation no further, and leave it to its new owner,
    who completes it. (A store write already under way when the lease was
    lost may still land: it is the same version with the same material,
    which the new owner writes idempotently anyway.)"""
    first = "file:lease/first"
    app.keys.issue("lease/k", owner="t", profile="interactive", policy="standard", actor="test",
                   destinations=[first, "file:lease/second"])  # fmt: skip
    label = stolen_at.replace("FIRST", first)
    stolen: list[str] = []

    def steal(rotation_id: str, at: str) -> None:
        if at == label and not stolen:
            with app.sessions.begin() as session:
                session.execute(
                    update(models.Rotation).where(models.Rotation.id == rotation_id).values(lease_owner="replica-b")
                )
            stolen.append(rotation_id)

    app.rotations.checkpoint = steal
    result = app.rotations.rotate("lease/k", actor="test", reason="r")
    app.rotations.checkpoint = None
    assert stolen and not result.ok
    with app.sessions() as session:
        rotation = session.get(models.Rotation, stolen[0])
        assert rotation is not None
        assert (rotation.status, rotation.lease_owner) == ("running", "replica-b")
        assert rotation.step == {"pending:FIRST": "material_created", "tested": "tested",
                                 "promoted:FIRST": "activated"}[stolen_at]  # fmt: skip
        logged = [(e["step"], e.get("destination")) for e in rotation.steps]
    # Nothing after the step at which the lease was lost.
    expected_last = {"pending:FIRST": ("pending", first), "tested": ("tested", None),
                     "promoted:FIRST": ("promoted", first)}[stolen_at]  # fmt: skip
    assert logged[-1] == expected_last, logged
    # The new owner finishes it.
    resumed = app.rotations.runner.drive(stolen[0], "replica-b")
    assert resumed.ok
    assert_consistent(app, "lease/k", previous_number=1)
