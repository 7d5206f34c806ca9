"""Several ``keyops serve`` replicas on one PostgreSQL (the multi-replica
deployment): exactly-once rotation and revocation fan-out."""

from __future__ import annotations

import threading
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
        # The replicas are watched while the CLI runs, so what is measured is
        # the fan-out from the revocation's commit, not the CLI's exit (which
        # alone took seconds on a loaded CI machine).
        outcome: list[Any] = []
        revoking = threading.Thread(target=lambda n=i, out=outcome: out.append(cli("keys", "revoke", f"team/rev{n}")))
        revoking.start()
        seen: dict[int, float] = {}

        def both_revoked(k: str = key, seen: dict[int, float] = seen) -> bool:
            for n, replica in enumerate(replicas):
                if n not in seen and replica.verify(token, k)["code"] == "REVOKED":
                    seen[n] = time.time()
            return len(seen) == len(replicas)

        wait_for(both_revoked, timeout=60, interval=0.005, what="both replicas to answer REVOKED")
        revoking.join(timeout=60)
        assert outcome and outcome[0].code == 0, outcome
        revoked_at = inventory.keys.show(f"team/rev{i}").versions[0].revoked_at
        assert revoked_at is not None
        latencies.append(max(seen.values()) - revoked_at.timestamp())
    assert max(latencies) < 1.0, latencies  # from the revocation's commit to the last replica denying
