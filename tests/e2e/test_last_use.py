"""Per-version last use through a real ``keyops serve``: verify and usage
events reach ``key_versions.last_used_at`` (periodic flush and the flush at
SIGTERM), and usage-aware retirement acts on them.

The decisions are driven here through ``retire_ended_grace(now)`` at
moments computed from the recorded times (never slept)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from keyops.bootstrap import App
from keyops.domain.keyformat import hash_key
from keyops.inventory import models
from tests.e2e.serving import Served, make_token
from tests.support.versions import file_material, versions_by_number
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

IDLE = timedelta(minutes=30)  # built-in policy usage-aware: idle 30m, grace 24h
GRACE = timedelta(hours=24)


def _issue(app: App, name: str) -> str:
    return app.keys.issue(
        name, owner="team", profile="batch", policy="usage-aware", actor="test", destinations=[f"file:{name}"]
    ).plaintext


def _used(app: App, name: str, number: int) -> datetime | None:
    return versions_by_number(app, name)[number].last_used_at


def _key(app: App, name: str) -> models.Key:
    with app.sessions() as session:
        return session.execute(select(models.Key).where(models.Key.name == name)).scalar_one()


def _superseded(app: App, name: str) -> datetime:
    grace_end = versions_by_number(app, name)[1].grace_ends_at
    assert grace_end is not None
    return grace_end - GRACE


def _post_usage(server: Served, token: str, events: list[dict[str, Any]]) -> None:
    answer = server.http.post("/v1/usage", json=events, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert (doc["accepted"], doc["rejected"]) == (len(events), []), answer.text  # all kept as usage


def test_previous_version_lives_on_its_own_traffic_only(
    cli: Any, servers: Callable[..., Served], inventory: App
) -> None:
    token = make_token(cli)
    old = {name: _issue(inventory, name) for name in ("pay/old", "pay/new", "pay/byid")}
    # The daemon's own retire job runs once at start, then not again: on
    # PostgreSQL it would hold the candidates (SKIP LOCKED) from the calls below.
    server = servers(KEYOPS_SERVER_LAST_USE_FLUSH="1s", KEYOPS_SCHEDULER_RETIRE_GRACE_EVERY="1h")
    for name in old:
        assert inventory.rotations.rotate(name, actor="test", reason="r").ok
    new = {name: file_material(inventory, name) for name in old}
    t0 = max(_superseded(inventory, name) for name in old)

    # (a) 'old': the application still sends the previous key.
    answer = wait_for(
        lambda: (a := server.verify(token, old["pay/old"]))["version_state"] == "previous" and a,
        timeout=5,
        what="the server to know the rotation",
    )
    assert answer["code"] == "VALID"
    # (b) 'new': traffic only on the new key, verified and reported by hash
    # (which also moves the key's own last use).
    wait_for(lambda: server.verify(token, new["pay/new"])["code"] == "VALID", timeout=5, what="new key VALID")
    _post_usage(server, token, [{"ts": time.time(), "key_hash": hash_key(new["pay/new"]), "status": 200}])
    # (c) 'byid': a gateway that reports usage by key id only.
    byid = _key(inventory, "pay/byid").id
    _post_usage(server, token, [{"ts": time.time(), "key_id": byid, "status": 200}])

    wait_for(
        lambda: _used(inventory, "pay/old", 1) and _used(inventory, "pay/new", 2),
        timeout=10,
        what="the daemon's periodic flush of verified uses",
    )
    assert _used(inventory, "pay/new", 1) is None and _used(inventory, "pay/old", 2) is None
    assert _used(inventory, "pay/byid", 1) is None and _used(inventory, "pay/byid", 2) is None
    assert _key(inventory, "pay/new").last_used_at is not None

    old_used = _used(inventory, "pay/old", 1)
    byid_used = _key(inventory, "pay/byid").last_used_at
    assert old_used is not None and byid_used is not None
    first_use = min(old_used, byid_used)
    assert first_use > t0  # every use came after every rotation
    # Past the idle window since the rotations, inside it since the first use.
    between = t0 + IDLE + (first_use - t0) / 2
    retired = inventory.rotations.retire_ended_grace(between)
    assert [(r.key_name, r.version, r.why) for r in retired] == [("pay/new", 1, "idle")]
    wait_for(lambda: server.verify(token, old["pay/new"])["code"] == "EXPIRED", timeout=5, what="old 'new' key gone")
    assert server.verify(token, old["pay/old"])["code"] == "VALID"  # still accepted: a use again
    previous_use = old_used
    newer = wait_for(
        lambda: u if (u := _used(inventory, "pay/old", 1)) is not None and u > previous_use else None,
        timeout=10,
        what="the newer use flushed",
    )
    assert newer is not None
    old_used = newer

    later = max(old_used, byid_used) + IDLE
    assert later < t0 + GRACE
    retired = inventory.rotations.retire_ended_grace(later)
    assert sorted((r.key_name, r.version, r.why) for r in retired) == [("pay/byid", 1, "idle"), ("pay/old", 1, "idle")]
    assert server.terminate() < 8


def test_uses_not_yet_flushed_are_written_at_sigterm(cli: Any, servers: Callable[..., Served], inventory: App) -> None:
    token = make_token(cli)
    key = _issue(inventory, "team/stop")
    server = servers(KEYOPS_SERVER_LAST_USE_FLUSH="1h")
    before = datetime.now(tz=_key(inventory, "team/stop").created_at.tzinfo)
    assert server.verify(token, key)["code"] == "VALID"
    assert _used(inventory, "team/stop", 1) is None  # the next periodic flush is an hour away
    assert server.terminate() < 8
    used = _used(inventory, "team/stop", 1)
    assert used is not None and used >= before - timedelta(seconds=1)
    shown = cli("keys", "show", "team/stop", "--json")
    assert shown.code == 0, shown.stderr
    [version] = json.loads(shown.stdout)["versions"]
    assert datetime.fromisoformat(version["last_used_at"].replace("Z", "+00:00")) == used.replace(microsecond=0)
