"""``kill -9`` a real ``keyops serve`` and start it again: the detection
engine comes back from its checkpoint in the inventory, so a key past its
learning period is not learning again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keyops.bootstrap import App
from keyops.detect.engine import Engine
from keyops.detect.snapshot import restore_engine
from keyops.inventory import models
from tests.e2e.serving import Served, make_token
from tests.support.databases import sqlite_url
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite, the default inventory, only: the same code on PostgreSQL is
    covered by tests/integration/test_checkpoint.py (a serve start costs seconds)."""
    return sqlite_url(tmp_path)


FAST_CHECKPOINTS = {"KEYOPS_DETECTION_CHECKPOINT_EVERY": "1s", "KEYOPS_DETECTION_LATENESS": "1s"}


def _post(server: Served, token: str, events: list[dict[str, Any]]) -> None:
    answer = server.http.post("/v1/usage", json=events, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["rejected"] == [], answer.text


def _checkpointed(inventory: App) -> tuple[Engine, Any] | None:
    """The engine in the checkpoint row, and when it was written."""
    with inventory.sessions() as session:
        row = session.execute(select(models.DetectionCheckpoint.data, models.DetectionCheckpoint.written_at)).first()
    if row is None:
        return None
    engine = Engine()
    restore_engine(engine, bytes(row[0]))
    return engine, row[1]


def test_a_killed_replica_restarts_with_its_baselines(cli: Any, servers: Callable[..., Served], inventory: App) -> None:
    key_id = inventory.keys.issue("team/app", owner="team", profile="interactive", policy="standard", actor="t").key.id
    token = make_token(cli)
    first = servers(**FAST_CHECKPOINTS)
    now = time.time()
    # The key's first use four days ago (the built-in learning period is
    # three days), and some usage now.
    _post(first, token, [{"ts": now - 4 * 86400, "key_id": key_id, "ip": "10.0.0.1", "status": 200}])
    _post(
        first, token, [{"ts": now - 2 + i * 0.1, "key_id": key_id, "ip": "10.0.0.1", "status": 200} for i in range(5)]
    )

    def learned_in_checkpoint() -> bool:
        got = _checkpointed(inventory)
        return got is not None and key_id in got[0].keys and got[0].keys[key_id].learned

    wait_for(learned_in_checkpoint, timeout=30, interval=0.2, what="a checkpoint with the learned key")
    assert first.proc is not None
    first.proc.kill()  # SIGKILL: no shutdown, no last checkpoint
    first.proc.wait()
    got = _checkpointed(inventory)
    assert got is not None
    killed_at = got[1]

    second = servers(**FAST_CHECKPOINTS)
    wait_for(lambda: "detection state restored" in second.logs(), timeout=10, what="the restore log line")
    now = time.time()
    _post(second, token, [{"ts": now + i * 0.1, "key_id": key_id, "ip": "10.0.0.1", "status": 200} for i in range(5)])

    def restarted_checkpoint() -> Engine | None:
        got = _checkpointed(inventory)
        if got is None or got[1] <= killed_at or key_id not in got[0].keys:
            return None
        return got[0] if got[0].keys[key_id].last_ts >= now else None

    engine = wait_for(restarted_checkpoint, timeout=30, interval=0.2, what="a checkpoint after the restart")
    assert isinstance(engine, Engine)
    state = engine.keys[key_id]
    assert state.learned, "the key is past its learning period after the restart"
    assert state.first_ts < now - 3 * 86400
    assert second.terminate() < 15
    assert "detection checkpoint unreadable" not in first.logs() + second.logs()
