"""Crash recovery as a user meets it (issue 17): after ``kill -9`` of a
rotating process, ``keys rotate`` and ``rotations resume`` take the dead
worker's rotation over at once (the worker was a process on this host and
its pid is gone); a rotation held by a worker that may be alive is named,
with its worker and lease end, and ``--force`` takes it over."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from keyops.bootstrap import build
from keyops.config import load_settings
from keyops.inventory import models
from keyops.lifecycle.lease_holder import dead_local_process, process_worker_id
from tests.conftest import CliResult, run_cli
from tests.support.crash import kill_rotations_at
from tests.support.databases import sqlite_url


def _cli(env: dict[str, str], cwd: Path, *args: str) -> CliResult:
    return run_cli(args, env=env, cwd=cwd)


def test_dead_local_worker_is_taken_over_at_once_and_a_live_one_is_named(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**base_env, "KEYOPS_DATABASE_URL": sqlite_url(tmp_path)}
    app = build(load_settings(env=env))
    try:
        for name in ("pay/one", "pay/two", "pay/three"):
            app.keys.issue(name, owner="pay", profile="interactive", policy="standard", actor="test")
        # Three real processes, each SIGKILLed in the middle of its rotation.
        kill_rotations_at(env, [(name, "tested") for name in ("pay/one", "pay/two", "pay/three")])
        with app.sessions() as session:
            stmt = select(models.Key.name, models.Rotation).join(models.Key, models.Key.id == models.Rotation.key_id)
            rows = {name: rotation for name, rotation in session.execute(stmt)}
        assert {r.status for r in rows.values()} == {"running"}
        assert all(dead_local_process(r.lease_owner) for r in rows.values()), [r.lease_owner for r in rows.values()]
        # pay/three's worker might be alive elsewhere: another host's process.
        with app.sessions.begin() as session:
            session.execute(
                update(models.Rotation)
                .where(models.Rotation.id == rows["pay/three"].id)
                .values(lease_owner="elsewhere:pid4242:abcdef")
            )
    finally:
        app.close()

    # keys rotate on a key whose rotation died: finished now, not "already being rotated".
    rotated = _cli(env, tmp_path, "keys", "rotate", "pay/one", "--json")
    assert rotated.code == 0, rotated.stderr
    doc = json.loads(rotated.stdout)
    assert doc["status"] == "finished" and doc["id"] == rows["pay/one"].id and doc["new_version"] == 2

    # rotations resume finishes the other dead one and names the one it leaves.
    resumed = _cli(env, tmp_path, "rotations", "resume", "--json")
    assert resumed.code == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert (doc["rotated"], doc["failed"]) == (1, 0)
    assert [(h["key"], h["rotation_id"], h["worker"]) for h in doc["held"]] == [
        ("pay/three", rows["pay/three"].id, "elsewhere:pid4242:abcdef")
    ]

    refused = _cli(env, tmp_path, "keys", "rotate", "pay/three")
    assert refused.code == 5, refused
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keyops: error: pay/three is already being rotated")
    assert "elsewhere:pid4242:abcdef" in lines[0] and "until" in lines[0] and "--force" in lines[0]

    forced = _cli(env, tmp_path, "keys", "rotate", "pay/three", "--force", "--json")
    assert forced.code == 0, forced.stderr
    assert json.loads(forced.stdout)["status"] == "finished"
    app = build(load_settings(env=env))
    try:
        for name in ("pay/one", "pay/two", "pay/three"):
            assert [v.state for v in app.keys.show(name).versions] == ["previous", "current"], name
    finally:
        app.close()


def test_worker_ids_that_are_not_dead_local_processes() -> None:
    assert not dead_local_process(process_worker_id("abcdef"))  # this very process
    assert not dead_local_process("elsewhere:pid1:abcdef")  # another host
    assert not dead_local_process("myhost:8080")  # a daemon's stable name
    assert not dead_local_process(None)
