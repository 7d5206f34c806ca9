"""The registry of usage profiles and rotation policies in the inventory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.domain.specs import Profile, RotationPolicy, SpecError, parse_policy, parse_profile
from keyops.errors import InvalidInputError, NotFoundError
from keyops.inventory import models
from keyops.inventory.types import utcnow


def profile_from_row(row: models.Profile) -> Profile:
    return parse_profile(row.name, _spec_for_parse(row.spec))


def policy_from_row(row: models.RotationPolicy) -> RotationPolicy:
    return parse_policy(row.name, _spec_for_parse(row.spec))


def _spec_for_parse(spec: dict[str, Any]) -> dict[str, Any]:
    doc = dict(spec)
    doc.pop("name", None)
    if doc.get("retire_when_idle") is None:
        doc.pop("retire_when_idle", None)
    if doc.get("window") is None:
        doc.pop("window", None)
    return doc


def _profile_spec(profile: Profile) -> dict[str, Any]:
    doc = profile.to_document()
    doc.pop("name")
    return doc


def _policy_spec(policy: RotationPolicy) -> dict[str, Any]:
    doc = policy.to_document()
    doc.pop("name")
    return {k: v for k, v in doc.items() if v is not None}


class SpecRegistry:
    """Reads and writes profiles and policies; validates before it writes."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def sync_builtins(self, profiles: Iterable[Profile], policies: Iterable[RotationPolicy]) -> None:
        """Make the inventory hold the shipped built-ins.

        Missing ones are inserted; ones still marked built-in follow the
        shipped definition (so an upgrade's tuned thresholds arrive); ones an
        operator overrode (``profiles apply`` clears the built-in mark) are
        left alone."""
        profile_rows = [{"name": p.name, "spec": _profile_spec(p), "builtin": True} for p in profiles]
        policy_rows = [{"name": p.name, "spec": _policy_spec(p), "builtin": True} for p in policies]
        with self._sessions.begin() as session:
            pairs: tuple[tuple[Any, list[dict[str, Any]]], ...] = (
                (models.Profile, profile_rows),
                (models.RotationPolicy, policy_rows),
            )
            for model, rows in pairs:
                existing: dict[str, Any] = {r.name: r for r in session.execute(select(model)).scalars()}
                missing = [r for r in rows if r["name"] not in existing]
                for row in rows:
                    current = existing.get(row["name"])
                    if current is not None and current.builtin and current.spec != row["spec"]:
                        current.spec = row["spec"]
                # Several processes may start on a fresh database at once: insert
                # with "on conflict do nothing" so the losers of that race go on.
                if missing:
                    session.execute(_insert_ignoring_conflicts(session, model, missing))

    def apply(
        self, profiles: list[Profile], policies: list[RotationPolicy], *, actor: str, source: str
    ) -> list[tuple[str, str, str]]:
        """Upsert; returns (kind, name, "created"|"updated"|"unchanged")."""
        results: list[tuple[str, str, str]] = []
        with self._sessions.begin() as session:
            for profile in profiles:
                spec = _profile_spec(profile)
                row = session.get(models.Profile, profile.name)
                outcome = _upsert(session, row, models.Profile, profile.name, spec)
                results.append(("profile", profile.name, outcome))
                if outcome != "unchanged":
                    audit.append(
                        session,
                        actor=actor,
                        action=f"profile.{outcome}",
                        reason=f"applied from {source}",
                        details={"profile": profile.name, "spec": spec},
                    )
            for policy in policies:
                spec = _policy_spec(policy)
                prow = session.get(models.RotationPolicy, policy.name)
                outcome = _upsert(session, prow, models.RotationPolicy, policy.name, spec)
                results.append(("policy", policy.name, outcome))
                if outcome != "unchanged":
                    audit.append(
                        session,
                        actor=actor,
                        action=f"policy.{outcome}",
                        reason=f"applied from {source}",
                        details={"policy": policy.name, "spec": spec},
                    )
        return results

    def profiles(self) -> list[tuple[Profile, bool]]:
        with self._sessions() as session:
            rows = session.execute(select(models.Profile).order_by(models.Profile.name)).scalars().all()
            return [(profile_from_row(r), r.builtin) for r in rows]

    def policies(self) -> list[tuple[RotationPolicy, bool]]:
        with self._sessions() as session:
            rows = session.execute(select(models.RotationPolicy).order_by(models.RotationPolicy.name)).scalars().all()
            return [(policy_from_row(r), r.builtin) for r in rows]

    def profile(self, name: str) -> Profile:
        with self._sessions() as session:
            return get_profile(session, name)

    def policy(self, name: str) -> RotationPolicy:
        with self._sessions() as session:
            return get_policy(session, name)


def _insert_ignoring_conflicts(session: Session, model: Any, rows: list[dict[str, Any]]) -> Any:
    now = utcnow()
    values = [{**r, "created_at": now, "updated_at": now} for r in rows]
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(model).values(values).on_conflict_do_nothing()
    return sqlite_insert(model).values(values).on_conflict_do_nothing()


def _upsert(session: Session, row: Any, model: Any, name: str, spec: dict[str, Any]) -> str:
    if row is None:
        session.add(model(name=name, spec=spec, builtin=False))
        return "created"
    if row.spec == spec:
        return "unchanged"
    row.spec = spec
    row.builtin = False
    return "updated"


def get_profile(session: Session, name: str) -> Profile:
    row = session.get(models.Profile, name)
    if row is None:
        known = ", ".join(session.execute(select(models.Profile.name).order_by(models.Profile.name)).scalars())
        raise NotFoundError(
            f"unknown profile {name!r}: known profiles are {known or 'none'} (see keyops profiles list)"
        )
    return profile_from_row(row)


def get_policy(session: Session, name: str) -> RotationPolicy:
    row = session.get(models.RotationPolicy, name)
    if row is None:
        known = ", ".join(
            session.execute(select(models.RotationPolicy.name).order_by(models.RotationPolicy.name)).scalars()
        )
        raise NotFoundError(f"unknown policy {name!r}: known policies are {known or 'none'} (see keyops policies list)")
    return policy_from_row(row)


def spec_error_to_input_error(exc: SpecError, source: str, line: int | None) -> InvalidInputError:
    where = f"{source}:{line}" if line else source
    return InvalidInputError(f"{where}: {exc.path}: {exc.problem}")
