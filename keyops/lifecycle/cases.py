"""Cases: what people are told about detection, once per episode.

A case gathers the findings about one key (or one cluster of keys) and rises
in severity; people hear about it when it opens and again only when it
escalates (``case.opened`` / ``case.escalated`` outbox events), never once per
finding. The engine decides when a case opens or escalates
(:class:`keyops.detect.model.CaseNotice`); this module persists that and
writes the one outbox event per notice, in the caller's transaction.

Idempotence: a case remembers the highest severity it has announced, so a
notice processed twice (a replay of the same log, a retried batch) is not
sent twice. Shadow cases are recorded the same way and never sent: a
provider calibrating a profile reads them with ``keyops cases list``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keyops.detect.model import ACTION_RANK, SEVERITY_NAMES, CaseNotice, iso
from keyops.domain.ids import uuid7
from keyops.domain.redact import redact
from keyops.errors import InvalidInputError, NotFoundError
from keyops.inventory import models
from keyops.inventory.idprefix import resolve_id
from keyops.inventory.types import storable, utcnow
from keyops.notify import outbox

CASE_STATUSES = ("open", "acknowledged", "closed")
#: Statuses whose case still gathers new findings about its key or cluster.
LIVE_STATUSES = ("open", "acknowledged")
_SUMMARY_MAX = 900


def severity_rank(severity: str) -> int:
    return SEVERITY_NAMES.index(severity) if severity in SEVERITY_NAMES else 0


def _short(text: str) -> str:
    text = storable(redact(text))
    return text if len(text) <= _SUMMARY_MAX else text[: _SUMMARY_MAX - 1] + "…"


def action_rank(action: str) -> int:
    """Ladder order; an alert's ``rotate_now`` ranks with ``rotate``."""
    return ACTION_RANK.get("rotate" if action == "rotate_now" else action, 0)


def _stronger(a: str, b: str) -> str:
    return a if action_rank(a) >= action_rank(b) else b


@dataclass
class NoticeOutcome:
    """What persisting one notice did: the case it landed in and whether a
    message is due (not a repeat, not shadow)."""

    case_id: str
    send: bool
    previous_severity: str


def live_case_for(session: Session, *, key_id: str | None, cluster_id: str | None) -> models.Case | None:
    """The open (or acknowledged) case a new finding about this key or
    cluster joins: the cluster's case first, then the key's own."""
    if cluster_id is not None:
        stmt = select(models.Case).where(models.Case.cluster_id == cluster_id, models.Case.status.in_(LIVE_STATUSES))
        found = session.execute(stmt.order_by(models.Case.opened_at.desc()).limit(1)).scalar_one_or_none()
        if found is not None:
            return found
    if key_id is not None:
        stmt = select(models.Case).where(
            models.Case.key_id == key_id, models.Case.cluster_id.is_(None), models.Case.status.in_(LIVE_STATUSES)
        )
        return session.execute(stmt.order_by(models.Case.opened_at.desc()).limit(1)).scalar_one_or_none()
    return None


def _locked(session: Session, case_id: str) -> models.Case | None:
    stmt = select(models.Case).where(models.Case.id == case_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def upsert_notice(session: Session, notice: CaseNotice, *, news: bool = False) -> NoticeOutcome:
    """Create or update the notice's case (the caller's transaction).

    A notice never lowers a case's severity. A notice above what the case
    already announced reopens a closed case and is due to be sent (unless
    shadow); one at or below it (the same notice again) changes nothing
    people see. ``news`` makes it due all the same (an alert whose decision
    is stronger than the case's so far)."""
    at = datetime.fromtimestamp(notice.at, UTC)
    case = _locked(session, notice.case_id)
    if case is None:
        try:
            with session.begin_nested():
                case = models.Case(
                    id=notice.case_id,
                    key_id=notice.key_id,
                    cluster_id=notice.cluster_id,
                    severity=notice.severity,
                    status="open",
                    enforcement=notice.enforcement,
                    action=notice.action,
                    summary=_short(notice.summary),
                    finding_count=0,
                    members=max(1, notice.members),
                    noticed_severity="none",
                    opened_at=at,
                    last_seen_at=at,
                )
                session.add(case)
                session.flush()
        except IntegrityError:  # another writer created it first
            case = _locked(session, notice.case_id)
            if case is None:
                raise
    previous = case.noticed_severity
    due = news or severity_rank(notice.severity) > severity_rank(previous)
    if severity_rank(notice.severity) >= severity_rank(case.severity):
        case.severity = notice.severity
        case.summary = _short(notice.summary)
    case.action = _stronger(case.action, notice.action)
    case.members = max(case.members, notice.members)
    case.enforcement = notice.enforcement
    if at > case.last_seen_at:
        case.last_seen_at = at
    if due:
        if severity_rank(notice.severity) > severity_rank(previous):
            case.noticed_severity = notice.severity
        if case.status == "closed":
            case.status = "open"
    session.flush()
    return NoticeOutcome(case.id, due and notice.enforcement != "shadow", previous)


def emit_notice(session: Session, notice: CaseNotice, outcome: NoticeOutcome) -> None:
    """The one outbox event for a notice that is due (ids only, redacted)."""
    if not outcome.send:
        return
    case = session.get(models.Case, outcome.case_id)
    kind = "case.opened" if notice.kind == "opened" and outcome.previous_severity == "none" else "case.escalated"
    finding_ids = (
        list(
            session.execute(
                select(models.Finding.id).where(models.Finding.case_id == outcome.case_id).order_by(models.Finding.id)
            ).scalars()
        )
        if case is not None
        else []
    )
    outbox.emit(
        session,
        kind,
        notice.key_id,
        {
            "case_id": outcome.case_id,
            "kind": notice.kind,
            "key_id": notice.key_id,
            "key_name": notice.key_name,
            "cluster_id": notice.cluster_id,
            "members": notice.members,
            "severity": notice.severity,
            "previous_severity": outcome.previous_severity,
            "summary": _short(notice.summary),
            "action": notice.action,
            "enforcement": notice.enforcement,
            "finding_id": notice.finding.id if notice.finding is not None else None,
            "finding_ids": finding_ids[-20:],
            "finding_count": case.finding_count if case is not None else 0,
            "at": iso(notice.at),
        },
    )


def join(session: Session, case_id: str, at: datetime) -> None:
    """Count one more finding in a case."""
    session.execute(
        update(models.Case).where(models.Case.id == case_id).values(finding_count=models.Case.finding_count + 1)
    )
    case = session.get(models.Case, case_id)
    if case is not None:
        session.refresh(case, ["finding_count"])
        if at > case.last_seen_at:
            case.last_seen_at = at


def note_alert(
    session: Session,
    *,
    key_id: str,
    key_name: str,
    finding: models.Finding,
    action: str,
) -> None:
    """An inbound alert (a leak report, a monitoring alarm) about a key:
    it joins the key's live case, escalating it when the alert is more
    severe, or opens a new case. It is news (one message) when it opens the
    case, raises its severity, or decides more than the case had (a leak
    report that rotates a key whose case so far only told people)."""
    live = live_case_for(session, key_id=key_id, cluster_id=None)
    stronger = live is not None and action_rank(action) > action_rank(live.action)
    notice = CaseNotice(
        case_id=live.id if live is not None else uuid7(),
        kind="escalated" if live is not None else "opened",
        key_id=key_id,
        key_name=key_name,
        cluster_id=None,
        severity=finding.severity if finding.severity in SEVERITY_NAMES else "high",
        at=finding.observed_at.timestamp(),
        summary=finding.summary,
        action=action,
        enforcement="enforce",
    )
    outcome = upsert_notice(session, notice, news=stronger)
    finding.case_id = outcome.case_id
    session.flush()
    join(session, outcome.case_id, finding.observed_at)
    emit_notice(session, notice, outcome)


def case_document(row: models.Case, key_name: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "key_id": row.key_id,
        "key_name": key_name,
        "cluster_id": row.cluster_id,
        "members": row.members,
        "severity": row.severity,
        "status": row.status,
        "enforcement": row.enforcement,
        "action": row.action,
        "summary": row.summary,
        "finding_count": row.finding_count,
        "opened_at": iso(row.opened_at.timestamp()),
        "last_seen_at": iso(row.last_seen_at.timestamp()),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


class CaseService:
    """Read cases back, and let people acknowledge or close them."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def list(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if status is not None and status not in CASE_STATUSES:
            raise InvalidInputError(f"unknown case status {status!r} (use one of: {', '.join(CASE_STATUSES)})")
        if limit < 1 or limit > 10000:
            raise InvalidInputError("limit must be between 1 and 10000")
        with self._sessions() as session:
            stmt = select(models.Case, models.Key.name).outerjoin(models.Key, models.Key.id == models.Case.key_id)
            if status is not None:
                stmt = stmt.where(models.Case.status == status)
            stmt = stmt.order_by(models.Case.last_seen_at.desc(), models.Case.id.desc()).limit(limit)
            return [case_document(row, name) for row, name in session.execute(stmt)]

    def show(self, case_id: str) -> dict[str, Any]:
        """The case with its findings (oldest first, evidence left out: see
        ``keyops findings show``)."""
        from keyops.lifecycle.findings import finding_document

        with self._sessions() as session:
            case_id = resolve_id(session, models.Case.id, case_id, what="case", listing="keyops cases list")
            row = session.get(models.Case, case_id)
            if row is None:
                raise NotFoundError(f"no case with id {case_id!r} (see keyops cases list)")
            name = session.execute(select(models.Key.name).where(models.Key.id == row.key_id)).scalar_one_or_none()
            doc = case_document(row, name)
            stmt = (
                select(models.Finding, models.Key.name)
                .outerjoin(models.Key, models.Key.id == models.Finding.key_id)
                .where(models.Finding.case_id == case_id)
                .order_by(models.Finding.observed_at, models.Finding.id)
            )
            findings = []
            for finding, fname in session.execute(stmt):
                fdoc = finding_document(finding, fname)
                fdoc.pop("evidence", None)
                findings.append(fdoc)
            doc["findings"] = findings
            return doc

    def set_status(self, case_id: str, status: str) -> dict[str, Any]:
        if status not in CASE_STATUSES:
            raise InvalidInputError(f"unknown case status {status!r} (use one of: {', '.join(CASE_STATUSES)})")
        with self._sessions.begin() as session:
            case_id = resolve_id(session, models.Case.id, case_id, what="case", listing="keyops cases list")
            row = session.get(models.Case, case_id)
            if row is None:
                raise NotFoundError(f"no case with id {case_id!r} (see keyops cases list)")
            row.status = status
            row.updated_at = utcnow()
        return self.show(case_id)
