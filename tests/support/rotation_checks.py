"""Invariant checks shared by the rotation tests (and usable by e2e tests):
after any rotation, finished or resumed, the inventory and every destination
must agree."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from keyops import audit
from keyops.bootstrap import App
from keyops.domain.keyformat import hash_key
from keyops.inventory import models
from keyops.inventory.types import utcnow
from keyops.stores.base import Stage


def accepted_hashes(app: App, key_name: str, now: datetime | None = None) -> set[str]:
    """The hashes verify must accept for the key: current, and previous while
    in grace (the rule the daemon's verify implements)."""
    now = now or utcnow()
    view = app.keys.show(key_name)
    with app.sessions() as session:
        rows = session.execute(select(models.KeyVersion).where(models.KeyVersion.key_id == view.id)).scalars()
        return {
            v.secret_hash
            for v in rows
            if v.secret_hash
            and (v.state == "current" or (v.state == "previous" and (v.grace_ends_at is None or v.grace_ends_at > now)))
        }


def assert_consistent(app: App, key_name: str, *, previous_number: int | None = None) -> None:
    """Exactly one current version; every destination serves it; no pending
    version anywhere; the given previous version still valid and readable
    where the store keeps a previous; the audit chain verifies."""
    view = app.keys.show(key_name)
    with app.sessions() as session:
        versions = list(session.execute(select(models.KeyVersion).where(models.KeyVersion.key_id == view.id)).scalars())
        unfinished = (
            session.execute(
                select(models.Rotation).where(models.Rotation.key_id == view.id, models.Rotation.status != "finished")
            )
            .scalars()
            .all()
        )
        chain = audit.verify(session)
    current = [v for v in versions if v.state == "current"]
    assert len(current) == 1, [(v.number, v.state) for v in versions]
    assert not [v for v in versions if v.state == "pending"], "orphaned pending version in the inventory"
    assert not unfinished, [(r.status, r.step, r.last_error) for r in unfinished]
    assert chain.ok, chain.problems
    by_id = {v.id: v for v in versions}
    for uri in view.destinations:
        dest, store = app.stores.resolve(uri)
        served = store.read(dest, Stage.CURRENT)
        assert served is not None, f"{uri} serves nothing"
        assert hash_key(served.material) == current[0].secret_hash, f"{uri} does not serve the current version"
        described = store.describe(dest)
        assert described.pending is None, f"{uri} holds an orphaned pending version"
        for held in described.versions:
            assert held in by_id, f"{uri} holds a version the inventory does not know"
        if previous_number is not None:
            previous = next(v for v in versions if v.number == previous_number)
            assert previous.state == "previous" and previous.grace_ends_at and previous.grace_ends_at > utcnow()
            old = store.read(dest, Stage.PREVIOUS)
            assert old is not None and hash_key(old.material) == previous.secret_hash, f"{uri} lost the previous"
