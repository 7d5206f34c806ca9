"""Crash safety: rotations in child processes are SIGKILLed after each
persisted step (and between the destinations of a step); the next process
resumes them, and the inventory and every store must agree afterwards.

One key per crash point, all children at once (the test stays fast and also
exercises concurrent workers on one database)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from keyops.bootstrap import build
from keyops.config import load_settings
from keyops.domain.keyformat import hash_key
from keyops.stores.base import Stage
from tests.support.crash import kill_rotations_at
from tests.support.rotation_checks import assert_consistent

LABELS = [
    "material_created",
    "pending:VAULT",
    "pending:AWS",
    "pending",
    "tested",
    "activated",
    "promoted:VAULT",
    "promoted:AWS",
    "promoted",
    "finished",
]


@pytest.fixture
def crash_env(env: dict[str, str], vault_env: dict[str, str], aws_env: dict[str, str]) -> dict[str, str]:
    return {**env, **vault_env, **aws_env}


def test_resume_after_sigkill_at_every_step(crash_env: dict[str, str], store_prefix: str) -> None:
    app = build(load_settings(env=crash_env))
    try:
        jobs = []
        for index, crash_at in enumerate(LABELS):
            name = f"payments/crash-{index}"
            vault_uri = f"vault:secret/{store_prefix}{index}/llm-key"
            aws_uri = f"aws-sm:{store_prefix}{index}/prod-llm"
            issued = app.keys.issue(
                name,
                owner="payments",
                profile="interactive",
                policy="standard",
                actor="test",
                destinations=[vault_uri, aws_uri],
            )
            label = crash_at.replace("VAULT", vault_uri).replace("AWS", aws_uri)
            jobs.append((name, crash_at, issued.plaintext, vault_uri, label))
        kill_rotations_at(crash_env, [(j[0], j[4]) for j in jobs])

        # While the dead workers' leases are live (resume would take them over at
        # once: they were processes on this host; see test_crash_recovery_cli.py),
        # the current key keeps working everywhere: each store still
        # serves a version verify accepts (the old one or, after activation, the new).
        for name, _, first_key, vault_uri, _ in jobs:
            dest, store = app.stores.resolve(vault_uri)
            served = store.read(dest, Stage.CURRENT)
            assert served is not None
            assert served.material == first_key or hash_key(served.material) == _current_hash(app, name)

        # The operator (or a daemon after lease expiry) resumes them all.
        results = app.rotations.resume(worker_id="restarted", only_expired_leases=False, include_failed=True)
        assert sorted(r.key_name for r in results) == sorted(n for n, c, *_ in jobs if c != "finished")
        assert all(r.ok for r in results), [(r.key_name, r.last_error) for r in results]
        for name, crash_at, _, _, _ in jobs:
            view = app.keys.show(name)
            assert view.current_version is not None and view.current_version.number == 2, crash_at
            assert_consistent(app, name, previous_number=1)
        recreated = [r for r in results if any(s["step"] == "material_recreated" for s in r.steps)]
        # Killed before any store had the material: fresh material, same version.
        assert [r.key_name for r in recreated] == ["payments/crash-0"]
    finally:
        app.close()


def _current_hash(app, name: str) -> str:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from keyops.inventory import models

    view = app.keys.show(name)
    with app.sessions() as session:
        return str(
            session.execute(
                select(models.KeyVersion.secret_hash).where(
                    models.KeyVersion.key_id == view.id, models.KeyVersion.state == "current"
                )
            ).scalar_one()
        )


ISSUE_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from keyops.bootstrap import build
    from keyops.config import load_settings

    app = build(load_settings())
    vault = app.stores.for_scheme("vault")
    real_put = vault.put_initial

    def put_then_die(*args, **kwargs):
        real_put(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # the first destination got the key; the second never will

    vault.put_initial = put_then_die
    app.keys.issue(sys.argv[1], owner="payments", profile="interactive", policy="standard", actor="test",
                   destinations=sys.argv[2:])
    """
)


def test_issue_killed_between_destinations_is_undone(crash_env: dict[str, str], store_prefix: str) -> None:
    vault_uri, aws_uri = f"vault:secret/{store_prefix}half", f"aws-sm:{store_prefix}half"
    proc = subprocess.run(
        [sys.executable, "-c", ISSUE_CHILD, "payments/half", vault_uri, aws_uri],
        env=crash_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    app = build(load_settings(env=crash_env))
    try:
        view = app.keys.show("payments/half")
        assert view.state == "suspended"  # never active: verify rejects it
        dest, store = app.stores.resolve(vault_uri)
        assert store.describe(dest).exists
        app.rotations.resume()  # a live issue may still be running: left alone
        assert app.keys.show("payments/half").state == "suspended"
        app.rotations.resume(only_expired_leases=False)  # the operator knows it died
        assert [k.name for k in app.keys.list()] == []
        assert not store.describe(dest).exists
        aws_dest, aws_store = app.stores.resolve(aws_uri)
        assert not aws_store.describe(aws_dest).exists
        with app.sessions() as session:
            from keyops import audit

            assert audit.verify(session).ok
        # The name is free again.
        app.keys.issue(
            "payments/half",
            owner="payments",
            profile="interactive",
            policy="standard",
            actor="test",
            destinations=[vault_uri, aws_uri],
        )
    finally:
        app.close()
