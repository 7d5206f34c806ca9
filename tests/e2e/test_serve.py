"""``keyops serve`` as real processes, driven over HTTP and by the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from keyops.bootstrap import App
from tests.e2e.serving import Served, assert_rotated_once, finished_per_key, issue_many, make_due, make_token
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _material(app: App, uri: str) -> str:
    dest, store = app.stores.resolve(uri)
    stored = store.read(dest)
    assert stored is not None
    return str(stored.material)


def test_issue_verify_rotate_expire_revoke(cli: Any, servers: Callable[..., Served], inventory: App) -> None:
    token = make_token(cli)
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


def test_sigterm_during_rotation_burst_then_restart_finishes(servers: Callable[..., Served], inventory: App) -> None:
    ids = issue_many(inventory, 60, "stop")
    server = servers()
    make_due(inventory, ids)
    wait_for(lambda: len(finished_per_key(inventory)) >= 5, timeout=30, interval=0.01, what="rotations under way")
    took = server.terminate()
    assert took < 6 + 2, f"stopped in {took:.1f}s, bound is 6s"
    server = servers()
    wait_for(lambda: len(finished_per_key(inventory)) == 60, timeout=90, interval=0.2, what="every rotation done")
    assert_rotated_once(inventory, ids)
    assert server.terminate() < 8
