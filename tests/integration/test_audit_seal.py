"""The audit chain is sealed under a key kept outside the database: someone
who can write to the database but lacks the key cannot rewrite the chain so
that it verifies; legacy (unkeyed) chains are re-sealed; an exported head
catches events deleted at the end. Every CLI check runs ``python -m keyops``."""

from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from keyops import audit
from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.errors import ConfigError
from keyops.inventory import migrate
from keyops.inventory.db import make_engine
from keyops.inventory.models import AuditEvent, AuditHead
from keyops.inventory.types import utcnow

EVENTS = 6


def _events(app: App, n: int = EVENTS, start: int = 0) -> None:
    for i in range(start, start + n):
        with app.sessions.begin() as session:
            audit.append(session, actor="test", action="test.event", reason=f"event {i}", details={"i": i})


def _verify(app: App, **kwargs: object) -> audit.VerifyResult:
    with app.sessions() as session:
        return audit.verify(session, **kwargs)  # type: ignore[arg-type]


def _rows(app: App) -> list[tuple[int, str, str, str]]:
    with app.sessions() as session:
        return [
            (r.seq, r.prev_hash, r.hash, r.hash_alg)
            for r in session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()
        ]


def _rehash_plain(app: App, *, from_seq: int = 1, downgrade: bool = False) -> None:
    """What an attacker with database write access but without the key can
    do: recompute every link from ``from_seq`` on with plain SHA-256 (the old
    chain's formula), and fix the head, so the chain is consistent again."""
    with app.sessions.begin() as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        prev = audit.GENESIS_HASH
        for event in events:
            if event.seq >= from_seq:
                event.prev_hash = prev
                event.hash = audit.hash_of(event)
                if downgrade:
                    event.hash_alg = audit.ALG_SHA256
                    event.seal_key_id = None
            prev = event.hash
            session.flush()
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=events[-1].seq, hash=prev))


def test_edit_with_recomputed_sha256_chain_is_detected(app: App, cli) -> None:  # type: ignore[no-untyped-def]
    """The regression: the old chain verified after this rewrite."""
    _events(app)
    with app.sessions.begin() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(reason="nothing to see"))
    _rehash_plain(app, from_seq=3)
    result = _verify(app)
    assert not result.ok and result.first_bad_seq == 3, result.problems
    assert "event 3" in result.problems[0] and "edited" in result.problems[0]
    run = cli("audit", "verify")
    assert run.code == 9
    assert run.stderr.startswith("keyops: error: audit chain is broken: event 3 (test.event at ")
    assert len(run.stderr.splitlines()) == 1


def test_every_row_rehashed_with_sha256_is_detected_at_the_first_row(app: App) -> None:
    _events(app)
    with app.sessions.begin() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 5).values(actor="someone-else"))
    _rehash_plain(app)
    result = _verify(app)
    assert not result.ok and result.first_bad_seq == 1, result.problems
    assert "event 1" in result.problems[0] and "HMAC" in result.problems[0]


def test_a_chain_downgraded_to_sha256_does_not_verify_and_the_anchor_catches_it(app: App, cli) -> None:  # type: ignore[no-untyped-def]
    """Rewriting every event as a legacy event: the chain is self-consistent,
    but legacy events never pass as sealed, and the exported head no longer matches."""
    _events(app)
    anchor = cli("audit", "head").stdout.strip()
    with app.sessions.begin() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(reason="rewritten"))
    _rehash_plain(app, downgrade=True)
    result = _verify(app)
    assert result.intact and not result.ok and result.legacy_events == EVENTS
    run = cli("audit", "verify")
    assert run.code == 9 and "audit chain is not sealed: 6 of 6 events are unkeyed legacy events" in run.stderr
    run = cli("audit", "verify", "--expect-head", anchor)
    assert run.code == 10, run.stderr
    assert "event 6 carries hash" in run.stderr and "rewritten" in run.stderr


def test_an_unkeyed_event_after_sealed_ones_is_a_failure(app: App) -> None:
    _events(app)
    with app.sessions.begin() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.seq == EVENTS)).scalar_one()
        event.hash_alg, event.seal_key_id = audit.ALG_SHA256, None
        event.hash = audit.hash_of(event)
        session.execute(update(AuditHead).values(hash=event.hash))
    result = _verify(app)
    assert not result.ok and result.first_bad_seq == EVENTS
    assert "plain SHA-256 hash after sealed events" in result.problems[0]


def test_wrong_key_fails_with_one_clear_line_and_cannot_append(app: App, env: dict[str, str], cli) -> None:  # type: ignore[no-untyped-def]
    _events(app)
    other = secrets.token_hex(32)
    run = cli("audit", "verify", extra_env={"KEYOPS_AUDIT_KEY": other})
    assert run.code == 9
    assert len(run.stderr.splitlines()) == 1
    assert "event 1 (test.event at" in run.stderr and "is sealed with audit key" in run.stderr
    assert "but the configured key is" in run.stderr and "KEYOPS_AUDIT_KEY" in run.stderr
    assert other not in run.stderr
    before = _rows(app)
    run = cli("keys", "issue", "team/wrong-key", "--owner", "t", extra_env={"KEYOPS_AUDIT_KEY": other})
    assert run.code == 3, run.stderr
    assert "the audit chain in the database is sealed with audit key" in run.stderr
    assert _rows(app) == before
    assert "team/wrong-key" not in cli("keys", "list").stdout
    assert _verify(app).ok


def test_key_from_the_environment_seals_and_verifies(app: App, env: dict[str, str]) -> None:
    key = secrets.token_hex(32)
    keyed = build(load_settings(env={**env, "KEYOPS_AUDIT_KEY": key}))
    try:
        with keyed.sessions() as session:
            assert audit.verify(session).ok  # an empty chain
        # The default key file's chain and this key's chain are different chains.
        _events(keyed, 2)
        assert _verify(keyed).ok
        assert not _verify(app).ok
    finally:
        keyed.close()


def test_head_and_expect_head_catch_a_truncated_chain(app: App, cli) -> None:  # type: ignore[no-untyped-def]
    _events(app)
    old = cli("audit", "head")
    assert old.code == 0
    old_seq, old_hash = audit.parse_head(old.stdout)
    assert old_seq == EVENTS
    doc = json.loads(cli("audit", "head", "--json").stdout)
    assert doc["seq"] == EVENTS and doc["hash"] == old_hash and doc["anchor"] == old.stdout.strip()
    assert doc["hash_alg"] == "hmac-sha256" and len(doc["seal_key_id"]) == 16
    # The chain grows: an older head is still held.
    _events(app, 2, start=EVENTS)
    ok = cli("audit", "verify", "--expect-head", old.stdout.strip())
    assert ok.code == 0 and f"holds the expected head {EVENTS}" in ok.stdout, ok.stderr
    latest = cli("audit", "head").stdout.strip()
    # Someone deletes the last three events and points the head at the new tail.
    with app.sessions.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq > 5"))
        tail = session.execute(select(AuditEvent).where(AuditEvent.seq == 5)).scalar_one()
        session.execute(update(AuditHead).values(seq=5, hash=tail.hash))
    assert cli("audit", "verify").code == 0  # without an anchor, a clean cut cannot be seen
    for anchor in (latest, old.stdout.strip()):
        run = cli("audit", "verify", "--expect-head", anchor)
        assert run.code == 10, run.stderr
        assert "the chain ends at event 5 but the expected head is event" in run.stderr
        assert "truncated" in run.stderr and len(run.stderr.splitlines()) == 1
    as_json = cli("audit", "verify", "--json", "--expect-head", latest)
    assert as_json.code == 10
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["head"]["seq"] == 5 and doc["expected_head"]["seq"] == EVENTS + 2


def test_expect_head_with_a_different_hash_fails(app: App, cli) -> None:  # type: ignore[no-untyped-def]
    _events(app)
    seq, digest = audit.parse_head(cli("audit", "head").stdout)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    run = cli("audit", "verify", "--expect-head", f"{seq}:{wrong}")
    assert run.code == 10 and f"event {seq} carries hash {digest}, not the expected {wrong}" in run.stderr


def test_expect_head_bad_format_is_refused(app: App, cli) -> None:  # type: ignore[no-untyped-def]
    _events(app, 1)
    for bad in ("6", "x:abc", "6:" + "g" * 64, "-1:" + "0" * 64):
        run = cli("audit", "verify", "--expect-head", bad)
        assert run.code == 6, (bad, run.stderr)
        assert run.stderr.startswith("keyops: error: --expect-head: expected SEQ:HASH")


def _legacy_chain(db_url: str, n: int) -> None:
    """A database as the previous release left it: schema 0003 and events
    chained with plain SHA-256, written with that release's formula."""
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine, "0003")
        table = AuditEvent.__table__
        prev = audit.GENESIS_HASH
        with engine.begin() as conn:
            for seq in range(1, n + 1):
                row = {
                    "seq": seq,
                    "id": f"legacy-{seq}",
                    "at": utcnow(),
                    "actor": "old-release",
                    "action": "key.issued",
                    "key_id": None,
                    "key_name": f"team/legacy-{seq}",
                    "reason": f"legacy {seq}",
                    "details": {"n": seq},
                    "prev_hash": prev,
                }
                digest = audit.compute_hash(event_id=row["id"], **{k: v for k, v in row.items() if k != "id"})
                conn.execute(insert(table).values(**row, hash=digest))
                prev = digest
            conn.execute(update(AuditHead.__table__).values(seq=n, hash=prev))
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def test_legacy_chain_is_reported_then_sealed(db_url: str, env: dict[str, str], cli) -> None:  # type: ignore[no-untyped-def]
    _legacy_chain(db_url, 4)
    app = build(load_settings(env=env))
    try:
        result = _verify(app)
        assert result.intact and not result.ok and result.legacy_events == 4 and result.sealed_events == 0
        legacy_anchor = cli("audit", "head")
        assert "legacy (unkeyed) event" in legacy_anchor.stderr
        # keyops keeps working after the upgrade: new events are sealed and follow the legacy ones.
        _events(app, 2)
        result = _verify(app)
        assert result.intact and result.legacy_events == 4 and result.sealed_events == 2
        run = cli("audit", "verify")
        assert run.code == 9 and "4 of 6 events are unkeyed legacy events" in run.stderr
        assert "keyops audit seal" in run.stderr
        sealed = cli("audit", "seal")
        assert sealed.code == 0, sealed.stderr
        assert "sealed 6 events (4 were legacy)" in sealed.stdout
        result = _verify(app)
        assert result.ok and result.events == 7 and result.sealed_events == 7, result.problems
        assert {alg for *_, alg in _rows(app)} == {"hmac-sha256"}
        with app.sessions() as session:
            last = session.execute(select(AuditEvent).where(AuditEvent.seq == 7)).scalar_one()
            assert last.action == "audit.sealed" and last.details["legacy_events"] == 4
        assert cli("audit", "verify").code == 0
        assert "nothing to seal" in cli("audit", "seal").stdout
        # A head exported before sealing no longer matches (the message says why).
        stale = cli("audit", "verify", "--expect-head", legacy_anchor.stdout.strip())
        assert stale.code == 10 and "keyops audit seal" in stale.stderr
    finally:
        app.close()


def test_a_broken_legacy_chain_is_not_sealed_and_nothing_changes(db_url: str, env: dict[str, str], cli) -> None:  # type: ignore[no-untyped-def]
    _legacy_chain(db_url, 5)
    app = build(load_settings(env=env))
    try:
        with app.sessions.begin() as session:
            session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(reason="tampered"))
        before = _rows(app)
        run = cli("audit", "seal")
        assert run.code == 9
        assert run.stderr.startswith("keyops: error: cannot seal: the audit chain is broken: event 2 (")
        assert "nothing was changed" in run.stderr
        assert _rows(app) == before
        assert {alg for *_, alg in before} == {"sha256"}
    finally:
        app.close()


def test_append_without_a_key_on_the_session_is_refused(app: App) -> None:
    with Session(app.engine) as session, pytest.raises(RuntimeError, match="no audit key"):
        audit.append(session, actor="test", action="test.event")


def test_append_under_a_different_key_is_a_config_error(app: App, env: dict[str, str]) -> None:
    _events(app, 1)
    other = build(load_settings(env={**env, "KEYOPS_AUDIT_KEY": secrets.token_hex(32)}))
    try:
        with pytest.raises(ConfigError, match="the same audit key"), other.sessions.begin() as session:
            audit.append(session, actor="test", action="test.event")
    finally:
        other.close()
    result = _verify(app)
    assert result.ok and result.events == 1
