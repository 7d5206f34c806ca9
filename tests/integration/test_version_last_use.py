"""Per-version last use, on SQLite and PostgreSQL: what verify and usage
events record, that it only moves forward (also under concurrent flushes),
and usage-aware retirement reading it (with the key-level fallback).

Time is driven through ``now`` and explicit timestamps, never slept."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select
from starlette.testclient import TestClient

from keyops.api import last_use
from keyops.api.app import create_app
from keyops.api.usage import write_usage
from keyops.api.verify import MAX_COST
from keyops.bootstrap import App
from keyops.detect.events import UsageEvent, parse_event
from keyops.domain.keyformat import hash_key
from keyops.inventory import models
from keyops.lifecycle.tokens import TokenService
from tests.support.versions import file_material, versions_by_number

IDLE = timedelta(minutes=30)  # the built-in usage-aware policy: idle 30m, grace 24h


def _issue(app: App, name: str, policy: str = "usage-aware") -> str:
    return app.keys.issue(
        name, owner="team", profile="interactive", policy=policy, actor="test", destinations=[f"file:{name}"]
    ).plaintext


def _used(app: App, name: str) -> dict[int, datetime | None]:
    return {n: v.last_used_at for n, v in versions_by_number(app, name).items()}


def _key_used(app: App, name: str) -> datetime | None:
    with app.sessions() as session:
        return session.execute(select(models.Key.last_used_at).where(models.Key.name == name)).scalar_one()


def _superseded(app: App, name: str) -> datetime:
    """When version 1 stopped being current (its grace end minus the policy's 24h grace)."""
    grace_end = versions_by_number(app, name)[1].grace_ends_at
    assert grace_end is not None
    return grace_end - timedelta(hours=24)


def _event(owner_id: str, ts: datetime, **ref: str) -> tuple[str, UsageEvent]:
    """(the key's id, an event naming it by ``ref``: key_id, key_hash or key)."""
    event = parse_event({"ts": ts.timestamp(), "status": 200, **ref})
    assert isinstance(event, UsageEvent), event
    return owner_id, event


def _at(ts: datetime) -> float:
    return ts.timestamp()


def test_flush_moves_last_use_forward_only(app: App) -> None:
    plaintext = _issue(app, "team/fwd")
    digest = bytes.fromhex(hash_key(plaintext))
    t1 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    t2, t3 = t1 + timedelta(minutes=5), t1 + timedelta(minutes=9)
    last_use.write(app.engine, {digest: _at(t2)})
    assert _used(app, "team/fwd") == {1: t2}
    last_use.write(app.engine, {digest: _at(t1)})  # a late flush from another replica
    assert _used(app, "team/fwd") == {1: t2}
    last_use.write(app.engine, {digest: _at(t3), bytes(32): _at(t3)})  # an unknown hash is harmless
    assert _used(app, "team/fwd") == {1: t3}


def test_concurrent_flushes_keep_the_latest_use(app: App) -> None:
    """Replicas flushing the same versions at once, with times in any order:
    no error (no deadlock), and each version ends at the latest time anyone saw."""
    digests = [bytes.fromhex(hash_key(_issue(app, f"team/c{i}"))) for i in range(12)]
    base = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    latest: dict[bytes, float] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def replica(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                batch = {d: base + rng.randrange(0, 10_000) for d in rng.sample(digests, 8)}
                with lock:
                    for d, ts in batch.items():
                        latest[d] = max(latest.get(d, 0.0), ts)
                last_use.write(app.engine, batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with app.engine.connect() as conn:
        stored = dict(conn.execute(select(models.KeyVersion.secret_hash, models.KeyVersion.last_used_at)).all())
    for d, ts in latest.items():
        assert stored[d.hex()] == datetime.fromtimestamp(ts, UTC)


def test_usage_events_by_hash_record_the_version_key_id_does_not(app: App) -> None:
    plaintext = _issue(app, "team/ev")
    key_id = versions_by_number(app, "team/ev")[1].key_id
    t1 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    write_usage(app.engine, [_event(key_id, t1, key_id=key_id)])
    assert _used(app, "team/ev") == {1: None}  # a key id names no version
    assert _key_used(app, "team/ev") == t1
    t2 = t1 + timedelta(minutes=3)
    write_usage(app.engine, [_event(key_id, t2, key_hash=hash_key(plaintext)), _event(key_id, t1, key=plaintext)])
    assert _used(app, "team/ev") == {1: t2}
    write_usage(app.engine, [_event(key_id, t1, key=plaintext)])  # older: never moves it back
    assert _used(app, "team/ev") == {1: t2}


def _verify(client: TestClient, token: str, key: str, **extra: Any) -> str:
    answer = client.post(
        "/v1/keys/verify", content=orjson.dumps({"key": key, **extra}), headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["code"])


def test_verify_records_genuine_uses_only_and_flushes_at_shutdown(app: App) -> None:
    token = TokenService(app.sessions).create("gateway", "verify,usage", actor="test")[1]
    _issue(app, "team/v-ok")
    limited = _issue(app, "team/v-limited")
    dead = _issue(app, "team/v-dead")
    assert app.rotations.rotate("team/v-dead", grace_seconds=0, actor="test", reason="leaked").ok
    before = datetime.now(UTC)
    with TestClient(create_app(app, worker_id="test")) as client:
        assert _verify(client, token, file_material(app, "team/v-ok")) == "VALID"
        assert _verify(client, token, limited, cost=MAX_COST) == "RATE_LIMITED"  # genuine, only over its limit
        assert _verify(client, token, dead) == "EXPIRED"
    # The lifespan's shutdown flush wrote them (the periodic one runs every 5s).
    ok, lim = _used(app, "team/v-ok")[1], _used(app, "team/v-limited")[1]
    assert ok is not None and ok >= before - timedelta(seconds=1)
    assert lim is not None and lim >= before - timedelta(seconds=1)
    assert _used(app, "team/v-dead") == {1: None, 2: None}


def test_retirement_reads_each_versions_own_last_use(app: App) -> None:
    """After one rotation each: 'old' keeps being used on its previous
    version, 'new' only on its new version (verify and usage by hash, which
    also moves the key's last use), 'byid' reports usage by key id only."""
    old_first = _issue(app, "pay/old")
    _issue(app, "pay/new")
    _issue(app, "pay/byid")
    for name in ("pay/old", "pay/new", "pay/byid"):
        assert app.rotations.rotate(name, actor="test", reason="r").ok
    t0 = max(_superseded(app, n) for n in ("pay/old", "pay/new", "pay/byid"))
    used = t0 + timedelta(minutes=25)
    last_use.write(app.engine, {bytes.fromhex(hash_key(old_first)): _at(used)})
    new_second = file_material(app, "pay/new")
    new_id = versions_by_number(app, "pay/new")[2].key_id
    last_use.write(app.engine, {bytes.fromhex(hash_key(new_second)): _at(used)})
    write_usage(app.engine, [_event(new_id, used, key=new_second)])
    byid = versions_by_number(app, "pay/byid")[2].key_id
    write_usage(app.engine, [_event(byid, used, key_id=byid)])
    assert _key_used(app, "pay/new") == used and _key_used(app, "pay/byid") == used

    # 31 idle minutes after the rotations: only the previous version nobody used goes,
    # although its key was used 6 minutes ago (on the new version).
    retired = app.rotations.retire_ended_grace(t0 + IDLE + timedelta(minutes=1))
    assert [(r.key_name, r.version, r.why) for r in retired] == [("pay/new", 1, "idle")]
    # 'old' was used 25 minutes after; 'byid' may have been (fallback): both kept until idle since then.
    assert app.rotations.retire_ended_grace(used + IDLE - timedelta(seconds=1)) == []
    late = app.rotations.retire_ended_grace(used + IDLE)
    assert sorted((r.key_name, r.version, r.why) for r in late) == [("pay/byid", 1, "idle"), ("pay/old", 1, "idle")]
    for name in ("pay/old", "pay/new", "pay/byid"):
        assert {n: v.state for n, v in versions_by_number(app, name).items()} == {1: "retired", 2: "current"}


def test_a_use_recorded_before_supersession_does_not_extend_it(app: App) -> None:
    """A previous version last used while it was still current is idle from
    its supersession on: an old use never shortens the idle window."""
    first = _issue(app, "pay/early")
    early = datetime.now(UTC) - timedelta(hours=2)
    last_use.write(app.engine, {bytes.fromhex(hash_key(first)): _at(early)})
    assert app.rotations.rotate("pay/early", actor="test", reason="r").ok
    t0 = _superseded(app, "pay/early")
    assert app.rotations.retire_ended_grace(t0 + IDLE - timedelta(seconds=1)) == []
    retired = app.rotations.retire_ended_grace(t0 + IDLE)
    assert [(r.key_name, r.version, r.why) for r in retired] == [("pay/early", 1, "idle")]


def test_versions_in_use_do_not_crowd_out_idle_ones(app: App) -> None:
    """Ten previous versions still in use were superseded first (their
    grace ends first, so they sort first); one idle version came after.
    With room for five per run, the idle one must still be found: versions
    that cannot be idle are not handed to the idleness check at all."""
    busy = [f"pay/busy{i}" for i in range(10)]
    firsts = {name: _issue(app, name) for name in busy}
    _issue(app, "pay/quiet")
    for name in [*busy, "pay/quiet"]:
        assert app.rotations.rotate(name, actor="test", reason="r").ok
    t0 = max(_superseded(app, n) for n in [*busy, "pay/quiet"])
    check_at = t0 + IDLE + timedelta(minutes=1)
    recent = check_at - timedelta(minutes=2)
    last_use.write(app.engine, {bytes.fromhex(hash_key(k)): _at(recent) for k in firsts.values()})

    retired = app.rotations.retirer.retire_ended_grace(check_at, worker_id="test", limit=5)
    assert [(r.key_name, r.version, r.why) for r in retired] == [("pay/quiet", 1, "idle")]
    for name in busy:
        assert versions_by_number(app, name)[1].state == "previous"
