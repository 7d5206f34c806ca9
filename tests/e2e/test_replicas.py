"""Several ``keyops serve`` replicas on one PostgreSQL (the multi-replica
deployment): exactly-once rotation and revocation fan-out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keyops.bootstrap import App
from tests.e2e.serving import Served, assert_rotated_once, finished_per_key, issue_many, make_due, make_token
from tests.support.databases import POSTGRES_ENV, postgres_base_url, postgres_schema_url
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def db_url() -> Iterator[str]:
    """PostgreSQL only (overrides the sqlite+postgres parametrisation)."""
    if postgres_base_url() is None:
        pytest.skip(f"PostgreSQL tests skipped: {POSTGRES_ENV} is not set")
    with postgres_schema_url() as url:
        yield url


@pytest.mark.postgres
def test_three_replicas_rotate_each_due_key_once(servers: Callable[..., Served], inventory: App) -> None:
    ids = issue_many(inventory, 300, "burst")
    replicas = [servers(KEYOPS_SCHEDULER_WORKER_ID=f"replica-{n}") for n in range(3)]
    make_due(inventory, ids)
    wait_for(lambda: len(finished_per_key(inventory)) == 300, timeout=120, interval=0.2, what="300 rotations")
    assert_rotated_once(inventory, ids)
    for replica in replicas:
        assert replica.terminate() < 10


@pytest.mark.postgres
def test_cli_revocation_reaches_two_replicas_within_a_second(
    cli: Any, servers: Callable[..., Served], inventory: App
) -> None:
    token = make_token(cli)
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
