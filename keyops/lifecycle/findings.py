"""Findings in the inventory, their cases, and the actions the ladder asks for.

Every finding is a ``findings`` row; findings about a key (or cluster) with
a case join it (``findings.case_id``). What reaches people is the case: one
``case.opened`` / ``case.escalated`` outbox event per engine notice
(``keyops.lifecycle.cases``), written in the same transaction as the
findings. ``finding.created`` events are written only when some sink opts in
to them (an evidence feed for machines, not a message for people).

Every action first writes a ``detection.action`` audit event carrying the
evidence, then goes through the lifecycle services like an operator's
command would: ``KeyService.suspend/revoke`` and
``RotationEngine.rotate(grace_seconds=0, trigger="detector")``. A ``notify``
action sends nothing itself (the case notice is the message). A profile in
``monitor`` or ``shadow`` mode gets the audit event (``applied: false``) and
nothing is done to the key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.detect.model import ActionRecord, CaseNotice, FindingRecord, iso
from keyops.domain.redact import redact, redact_value
from keyops.errors import InvalidInputError, KeyOpsError, NotFoundError
from keyops.inventory import models
from keyops.inventory.types import storable, utcnow
from keyops.lifecycle import cases
from keyops.lifecycle.keys import KeyService, find_key
from keyops.notify import outbox

log = logging.getLogger("keyops.detect")
ACTOR = "keyops:detector"
_REASON_MAX = 900


class Rotator(Protocol):
    def rotate(
        self,
        name_or_id: str,
        *,
        grace_seconds: int | None = None,
        actor: str,
        reason: str = "",
        trigger: str = "manual",
    ) -> Any: ...


def _short(text: str) -> str:
    text = storable(text)
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def _error_class(exc: SQLAlchemyError) -> str:
    """The database error's class only: its message and parameters may
    carry the evidence (a prompt's prefix) and do not belong in a log."""
    orig = getattr(exc, "orig", None)
    return type(orig if orig is not None else exc).__name__


def dedup_key(f: FindingRecord) -> str:
    """What makes a finding the same one again: its detector, key or cluster,
    window (event time), severity, action and summary. The engine is
    deterministic, so the events replayed after a restart from a checkpoint
    give the very same values, and the unique ``findings.dedup_key`` stores
    such a finding once."""
    parts = (f.detector, f.key_id or "", f.cluster_id or "", f.severity, f.action, f"{f.at:.3f}", f.summary)
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def finding_document(row: models.Finding, key_name: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "key_id": row.key_id,
        "key_name": key_name,
        "cluster_id": row.cluster_id,
        "detector": row.detector,
        "severity": row.severity,
        "score": row.score,
        "summary": row.summary,
        "action": row.action,
        "status": row.status,
        "enforcement": row.enforcement,
        "case_id": row.case_id,
        "at": iso(row.observed_at.timestamp()),
        "created_at": row.created_at.isoformat(),
        "evidence": row.evidence,
    }


class FindingService:
    """Persist findings, apply actions, and read findings back."""

    def __init__(
        self, sessions: sessionmaker[Session], keys: KeyService, rotator: Callable[[], Rotator | None]
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._rotator = rotator
        #: Cases read back (``keyops cases``); written by :meth:`record`.
        self.cases = cases.CaseService(sessions)

    def record(
        self,
        findings: Sequence[FindingRecord],
        notices: Sequence[CaseNotice] = (),
        enforcement: dict[int, str] | None = None,
        replayed: set[int] | None = None,
    ) -> int:
        """Insert findings, persist the cases' notices and announce each
        notice once; the number of findings that could not be stored.

        ``enforcement`` maps ``id(finding)`` to the mode its decision was
        made under. Cases come first, so a finding of the same batch joins
        its notice's case; a finding about a key (or cluster) with a live
        case joins that case. Each finding and each notice has its own
        savepoint inside one transaction: a row the database refuses is
        rolled back alone (logged without its content, which may quote a
        customer's prompt), so it cannot take the other keys' findings, or
        the actions that follow them, with it. A finding that was not
        stored keeps ``id = None``.

        A finding already stored (the same ``dedup_key``: events replayed
        after a restart) is not stored again: it takes the stored row's id,
        and ``id(finding)`` is added to ``replayed``."""
        if not findings and not notices:
            return 0
        modes = enforcement or {}
        failed = 0
        with self._sessions.begin() as session:
            batch_cases: dict[int, str] = {}  # id(finding) -> case id
            by_subject: dict[tuple[str, str | None], str] = {}
            outcomes: list[tuple[CaseNotice, cases.NoticeOutcome]] = []
            for notice in notices:
                try:
                    with session.begin_nested():
                        outcome = cases.upsert_notice(session, notice)
                except SQLAlchemyError as exc:
                    log.warning("case not stored", extra={"key_id": notice.key_id, "error": _error_class(exc)})
                    continue
                outcomes.append((notice, outcome))
                if notice.finding is not None:
                    batch_cases[id(notice.finding)] = outcome.case_id
                if notice.cluster_id is not None:
                    by_subject[("cluster", notice.cluster_id)] = outcome.case_id
                elif notice.key_id is not None:
                    by_subject[("key", notice.key_id)] = outcome.case_id
            want_events = outbox.anyone_wants(session, "finding.created")
            for f in findings:
                try:
                    with session.begin_nested():
                        if self._known(session, f):
                            if replayed is not None:
                                replayed.add(id(f))
                            continue
                        case_id = batch_cases.get(id(f)) or self._case_of(session, f, by_subject)
                        self._insert(session, f, case_id, modes.get(id(f)), want_events)
                except IntegrityError:
                    # Another writer stored the same finding meanwhile.
                    with session.begin_nested():
                        if self._known(session, f):
                            if replayed is not None:
                                replayed.add(id(f))
                            continue
                    f.id = None
                    failed += 1
                    log.warning(
                        "finding not stored",
                        extra={"key_id": f.key_id, "detector": f.detector, "error": "IntegrityError"},
                    )
                except SQLAlchemyError as exc:
                    f.id = None
                    failed += 1
                    log.warning(
                        "finding not stored",
                        extra={"key_id": f.key_id, "detector": f.detector, "error": _error_class(exc)},
                    )
            for notice, outcome in outcomes:
                try:
                    with session.begin_nested():
                        cases.emit_notice(session, notice, outcome)
                except SQLAlchemyError as exc:
                    log.warning("case notice not sent", extra={"key_id": notice.key_id, "error": _error_class(exc)})
        return failed

    @staticmethod
    def _known(session: Session, f: FindingRecord) -> bool:
        """Whether this finding is stored already (then ``f.id`` is its row's)."""
        found = session.execute(
            select(models.Finding.id).where(models.Finding.dedup_key == dedup_key(f))
        ).scalar_one_or_none()
        if found is None:
            return False
        f.id = found
        return True

    def applied_before(self, action: ActionRecord) -> bool:
        """Whether the decision on this action's (stored) finding was already
        audited, so acted on: true for an action replayed after a restart."""
        finding_id = action.finding.id
        if finding_id is None:
            return False
        with self._sessions() as session:
            rows = session.execute(
                select(models.AuditEvent.details).where(
                    models.AuditEvent.key_id == action.key_id, models.AuditEvent.action == "detection.action"
                )
            ).scalars()
            return any(isinstance(d, dict) and d.get("finding_id") == finding_id for d in rows)

    @staticmethod
    def _case_of(session: Session, f: FindingRecord, by_subject: dict[tuple[str, str | None], str]) -> str | None:
        if f.cluster_id is not None and ("cluster", f.cluster_id) in by_subject:
            return by_subject[("cluster", f.cluster_id)]
        if f.key_id is not None and ("key", f.key_id) in by_subject:
            return by_subject[("key", f.key_id)]
        live = cases.live_case_for(session, key_id=f.key_id, cluster_id=f.cluster_id)
        return live.id if live is not None else None

    @staticmethod
    def _insert(
        session: Session, f: FindingRecord, case_id: str | None, enforcement: str | None, announce: bool
    ) -> None:
        row = models.Finding(
            key_id=f.key_id,
            cluster_id=f.cluster_id,
            detector=f.detector,
            severity=f.severity,
            score=float(f.score),
            summary=_short(redact(f.summary)),
            evidence=redact_value(f.evidence),
            action=f.action,
            status="open",
            observed_at=datetime.fromtimestamp(f.at, UTC),
            created_at=utcnow(),
            case_id=case_id,
            enforcement=enforcement,
            dedup_key=dedup_key(f),
        )
        session.add(row)
        session.flush()
        f.id = row.id
        if case_id is not None:
            cases.join(session, case_id, row.observed_at)
        if not announce:
            return
        outbox.emit(
            session,
            "finding.created",
            f.key_id,
            {
                "finding_id": row.id,
                "case_id": case_id,
                "key_id": f.key_id,
                "key_name": f.key_name,
                "cluster_id": f.cluster_id,
                "detector": f.detector,
                "severity": f.severity,
                "summary": _short(redact(f.summary)),
                "action": f.action,
                "enforcement": enforcement,
                "at": iso(f.at),
            },
        )

    def apply(self, action: ActionRecord) -> None:
        """Audit the decision with its evidence, then act (only in enforce
        mode). ``notify`` acts on nothing: people hear through the case."""
        enforce = action.enforcement == "enforce"
        reason = _short(f"detector: {action.reason}")
        with self._sessions.begin() as session:
            try:
                key = find_key(session, action.key_id)
            except NotFoundError:
                action.outcome = "key no longer exists"
                return
            audit.append(
                session,
                actor=ACTOR,
                action="detection.action",
                key_id=key.id,
                key_name=key.name,
                reason=reason,
                details={
                    "action": action.action,
                    "severity": action.severity,
                    "enforcement": action.enforcement,
                    "applied": enforce and action.action != "notify",
                    "finding_id": action.finding.id,
                    "at": iso(action.at),
                    "evidence": action.finding.evidence,
                },
            )
            if action.action == "rotate" and enforce and self._rotator() is None:
                audit.append(
                    session,
                    actor=ACTOR,
                    action="key.rotate_requested",
                    key_id=key.id,
                    key_name=key.name,
                    reason=reason,
                    details={"grace_seconds": 0, "finding_id": action.finding.id},
                )
        if action.action == "notify":
            action.outcome = "recorded: people are told through the key's case"
            return
        if not enforce:
            action.outcome = f"{action.enforcement} mode: would {action.action}"
            return
        try:
            if action.action == "suspend":
                self._keys.suspend(action.key_id, actor=ACTOR, reason=reason)
            elif action.action == "revoke":
                self._keys.revoke(action.key_id, actor=ACTOR, reason=reason)
            elif action.action == "rotate":
                rotator = self._rotator()
                if rotator is None:
                    action.outcome = "rotation requested (no rotation engine in this process)"
                    return
                rotator.rotate(action.key_id, grace_seconds=0, actor=ACTOR, reason=reason, trigger="detector")
            action.applied = True
            action.outcome = "done"
        except KeyOpsError as exc:
            action.outcome = f"not applied: {exc.message}"
            log.warning("detector action not applied", extra={"key_id": action.key_id, "error": exc.message})

    # ---------------------------------------------------------------- read --

    def list(self, *, key: str | None = None, case: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if limit < 1 or limit > 10000:
            raise InvalidInputError("limit must be between 1 and 10000")
        with self._sessions() as session:
            stmt = select(models.Finding, models.Key.name).outerjoin(models.Key, models.Key.id == models.Finding.key_id)
            if key is not None:
                stmt = stmt.where(models.Finding.key_id == find_key(session, key).id)
            if case is not None:
                if session.get(models.Case, case) is None:
                    raise NotFoundError(f"no case with id {case!r} (see keyops cases list)")
                stmt = stmt.where(models.Finding.case_id == case)
            stmt = stmt.order_by(models.Finding.observed_at.desc(), models.Finding.id.desc()).limit(limit)
            return [finding_document(row, name) for row, name in session.execute(stmt)]

    def show(self, finding_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            row = session.get(models.Finding, finding_id)
            if row is None:
                raise NotFoundError(f"no finding with id {finding_id!r} (see keyops findings list)")
            name = session.execute(select(models.Key.name).where(models.Key.id == row.key_id)).scalar_one_or_none()
            return finding_document(row, name)
