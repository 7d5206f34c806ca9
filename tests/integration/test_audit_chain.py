"""The audit chain: every tampering is detected and named; concurrent
appenders on PostgreSQL leave one valid chain."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import select, text, update

from keyops import audit
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.inventory.models import AuditEvent


def _events(app: App, n: int = 6) -> None:
    for i in range(n):
        with app.sessions.begin() as session:
            audit.append(session, actor="test", action="test.event", reason=f"event {i}", details={"i": i})


def _verify(app: App) -> audit.VerifyResult:
    with app.sessions() as session:
        return audit.verify(session)


def test_intact_chain_verifies(app: App) -> None:
    _events(app)
    result = _verify(app)
    assert result.ok and result.events == 6


def test_edited_event_is_detected(app: App) -> None:
    _events(app)
    with app.sessions.begin() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(reason="nothing to see"))
    result = _verify(app)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "event 3" in result.problems[0] and "edited" in result.problems[0]


def test_edited_details_are_detected(app: App) -> None:
    _events(app)
    with app.sessions.begin() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(details={"i": 99}))
    assert _verify(app).first_bad_seq == 2


def test_deleted_event_is_detected(app: App) -> None:
    _events(app)
    with app.sessions.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    result = _verify(app)
    assert not result.ok and "event 4 is missing" in result.problems[0]


def test_deleted_tail_is_detected(app: App) -> None:
    _events(app)
    with app.sessions.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq = 6"))
    result = _verify(app)
    assert not result.ok and "deleted" in result.problems[0]


def test_reordered_events_are_detected(app: App) -> None:
    _events(app)
    with app.sessions.begin() as session:
        # swap the content of events 2 and 3 by swapping their sequence numbers
        session.execute(text("UPDATE audit_events SET seq = -2 WHERE seq = 2"))
        session.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 3"))
        session.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = -2"))
    result = _verify(app)
    assert not result.ok and result.first_bad_seq == 2


def test_inserted_event_is_detected(app: App) -> None:
    """A careful forger: shifts later events up, inserts an event after
    event 2 that copies the chain's key fingerprint, and relinks the next event
    to it. Without the audit key they can only give it a plain hash, so the
    chain breaks at the inserted event itself."""
    _events(app)
    with app.sessions.begin() as session:
        second = session.execute(select(AuditEvent).where(AuditEvent.seq == 2)).scalar_one()
        prev, at, key_id = second.hash, second.at, second.seal_key_id
        session.expunge_all()
        for seq in range(6, 2, -1):
            session.execute(text("UPDATE audit_events SET seq = :new WHERE seq = :old"), {"new": seq + 1, "old": seq})
        forged_hash = audit.compute_hash(
            seq=3,
            event_id="forged",
            at=at,
            actor="mallory",
            action="key.issued",
            key_id=None,
            key_name=None,
            reason="forged",
            details={},
            prev_hash=prev,
        )
        session.execute(text("UPDATE audit_events SET prev_hash = :h WHERE seq = 4"), {"h": forged_hash})
        session.add(
            AuditEvent(
                seq=3,
                id="forged",
                at=at,
                actor="mallory",
                action="key.issued",
                reason="forged",
                details={},
                prev_hash=prev,
                hash=forged_hash,
                hash_alg=audit.ALG_HMAC,
                seal_key_id=key_id,
            )
        )
        session.execute(text("UPDATE audit_head SET seq = 7"))
    result = _verify(app)
    assert not result.ok and result.first_bad_seq == 3, result.problems
    assert "event 3" in result.problems[0] and "edited" in result.problems[0]


def _append_many(env: dict[str, str], count: int, worker: int) -> None:
    application = build(load_settings(env=env))
    try:
        for i in range(count):
            with application.sessions.begin() as session:
                audit.append(session, actor=f"worker-{worker}", action="test.concurrent", details={"i": i})
    finally:
        application.close()


def test_concurrent_appends_from_four_processes_leave_one_chain(app: App, env: dict[str, str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(env, 25, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    result = _verify(app)
    assert result.ok, result.problems
    with app.sessions() as session:
        actions = session.execute(select(AuditEvent.actor).where(AuditEvent.action == "test.concurrent")).all()
    assert len(actions) == 100
