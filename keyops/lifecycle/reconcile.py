"""Reconcile: what the inventory says each destination holds vs what it holds.

For each key with destinations, each destination is read (by hash only: no
material leaves this module) and one row is reported:

* ``ok``: the current material matches the inventory's current version;
* ``missing``: the secret is not there;
* ``stale``: it serves an older version of this key (a promotion not done);
* ``changed``: it serves material the inventory does not know (changed out
  of band): an audit event and a finding record it;
* ``foreign``: the secret belongs to something else;
* ``extra_versions``: it still holds versions the inventory retired;
* ``unreachable``: the store could not be asked;
* ``rotating``: a rotation is in progress, so differences are expected.

``repair`` re-delivers the current version (read from a destination that
holds it, checked against the hash) to missing/stale/changed destinations,
and removes extra versions. Keys whose current material no destination holds
cannot be repaired this way: rotate them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from keyops import audit
from keyops.domain.keyformat import hash_key
from keyops.domain.states import KeyState
from keyops.errors import StoreError
from keyops.inventory import models
from keyops.lifecycle import claims
from keyops.stores.base import SecretContext, Stage
from keyops.stores.registry import StoreRegistry


@dataclass
class DriftRow:
    key: str
    destination: str
    status: str
    detail: str = ""
    repaired: bool = False

    def to_document(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "destination": self.destination,
            "status": self.status,
            "detail": self.detail,
            "repaired": self.repaired,
        }


@dataclass
class ReconcileReport:
    rows: list[DriftRow] = field(default_factory=list)

    @property
    def drift(self) -> list[DriftRow]:
        return [r for r in self.rows if r.status not in ("ok", "rotating") and not r.repaired]

    @property
    def ok(self) -> bool:
        return not self.drift

    def to_document(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": [r.to_document() for r in self.rows]}


@dataclass(frozen=True)
class _KeyState:
    id: str
    name: str
    destinations: tuple[str, ...]
    current_id: str | None
    current_hash: str | None
    known: dict[str, str]  # version id -> state
    hashes: dict[str, str]  # secret hash -> state
    rotating: bool


class Reconciler:
    def __init__(self, sessions: sessionmaker[Session], stores: StoreRegistry) -> None:
        self._sessions = sessions
        self._stores = stores

    def _keys(self) -> list[_KeyState]:
        with self._sessions() as session:
            rows = session.execute(
                select(models.Key)
                .where(models.Key.state.in_((KeyState.ACTIVE.value, KeyState.SUSPENDED.value)))
                .options(selectinload(models.Key.versions), selectinload(models.Key.destinations))
                .order_by(models.Key.name)
            ).scalars()
            out = []
            for key in rows:
                if not key.destinations:
                    continue
                current = next((v for v in key.versions if v.state == "current"), None)
                out.append(
                    _KeyState(
                        id=key.id,
                        name=key.name,
                        destinations=tuple(d.uri for d in key.destinations),
                        current_id=current.id if current else None,
                        current_hash=current.secret_hash if current else None,
                        known={v.id: v.state for v in key.versions},
                        hashes={v.secret_hash: v.state for v in key.versions if v.secret_hash},
                        rotating=claims.unfinished_rotation(session, key.id) is not None,
                    )
                )
            return out

    def run(self, *, repair: bool, actor: str) -> ReconcileReport:
        report = ReconcileReport()
        for key in self._keys():
            rows = [self._check(key, uri) for uri in key.destinations]
            if repair and not key.rotating:
                self._repair(key, rows, actor)
            self._record_changes(key, rows, actor)
            report.rows.extend(rows)
        return report

    def _check(self, key: _KeyState, uri: str) -> DriftRow:
        if key.rotating:
            return DriftRow(key.name, uri, "rotating", "a rotation is in progress")
        try:
            dest, store = self._stores.resolve(uri)
            described = store.describe(dest)
            if not described.exists:
                return DriftRow(key.name, uri, "missing", "the secret does not exist")
            if described.owner_key_id != key.id:
                return DriftRow(key.name, uri, "foreign", "the secret is not labelled as this key's")
            current = store.read(dest, Stage.CURRENT)
        except StoreError as exc:
            return DriftRow(key.name, uri, "unreachable", exc.message)
        if current is None:
            return DriftRow(key.name, uri, "missing", "no current version")
        digest = hash_key(current.material)
        if digest != key.current_hash:
            state = key.hashes.get(digest)
            if state is None:
                return DriftRow(key.name, uri, "changed", "serves material the inventory does not know")
            return DriftRow(key.name, uri, "stale", f"serves a {state} version")
        extra = [v for v in described.versions if key.known.get(v) not in ("current", "previous", "pending")]
        if extra:
            return DriftRow(key.name, uri, "extra_versions", f"{len(extra)} version(s) the inventory retired")
        return DriftRow(key.name, uri, "ok")

    def _current_material(self, key: _KeyState) -> str | None:
        for uri in key.destinations:
            try:
                dest, store = self._stores.resolve(uri)
                stored = store.read(dest, Stage.CURRENT)
            except StoreError:
                continue
            if stored is not None and hash_key(stored.material) == key.current_hash:
                return stored.material
        return None

    def _repair(self, key: _KeyState, rows: list[DriftRow], actor: str) -> None:
        needs = [r for r in rows if r.status in ("missing", "stale", "changed")]
        material = self._current_material(key) if needs else None
        ctx = SecretContext(key_id=key.id, key_name=key.name)
        for row in rows:
            try:
                dest, store = self._stores.resolve(row.destination)
                if row.status in ("missing", "stale", "changed"):
                    if material is None or key.current_id is None:
                        row.detail += "; cannot repair: no destination holds the current material (rotate the key)"
                        continue
                    store.put_initial(dest, key.current_id, material, ctx, adopt=row.status == "changed")
                    row.repaired = True
                elif row.status == "extra_versions":
                    for version_id in store.describe(dest).versions:
                        if key.known.get(version_id) not in ("current", "previous", "pending"):
                            store.retire(dest, version_id)
                    row.repaired = True
            except StoreError as exc:
                row.detail += f"; repair failed: {exc.message}"

    def _record_changes(self, key: _KeyState, rows: list[DriftRow], actor: str) -> None:
        changed = [r for r in rows if r.status == "changed"]
        if not changed:
            return
        with self._sessions.begin() as session:
            for row in changed:
                # One open finding per drifted destination, not one per reconcile run.
                already = session.execute(
                    select(models.Finding.id)
                    .where(models.Finding.key_id == key.id, models.Finding.detector == "reconcile")
                    .where(models.Finding.status == "open", models.Finding.summary.contains(row.destination))
                    .limit(1)
                ).first()
                if already is not None and not row.repaired:
                    continue
                audit.append(
                    session,
                    actor=actor,
                    action="destination.changed_out_of_band",
                    key_id=key.id,
                    key_name=key.name,
                    reason="reconcile",
                    details={"destination": row.destination, "repaired": row.repaired},
                )
                session.add(
                    models.Finding(
                        key_id=key.id,
                        detector="reconcile",
                        severity="high",
                        score=1.0,
                        summary=f"{row.destination} of {key.name} was changed outside keyops",
                        evidence={"destination": row.destination, "repaired": row.repaired},
                        action="none",
                    )
                )
