"""What the engine produces: findings and actions (plain data, no I/O).

A :class:`FindingRecord` is one detector's judgement about one key (or a
cluster); an :class:`ActionRecord` is what the profile's ladder says to do
about a key. The lifecycle layer persists findings and applies actions; the
engine never touches the inventory, which is what lets ``keyops replay
--dry-run`` run the very same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SEVERITY_NAMES = ("none", "low", "medium", "high", "critical")
ACTION_RANK = {"none": 0, "notify": 1, "rotate": 2, "suspend": 3, "revoke": 4}


def iso(ts: float) -> str:
    """Event time as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class KeyMeta:
    """What the engine knows about a key from the inventory."""

    key_id: str
    name: str
    owner: str
    profile: str
    overrides: str = ""  # the key's profile overrides as canonical JSON ("" = none)


@dataclass(slots=True)
class FindingRecord:
    detector: str
    key_id: str | None
    key_name: str | None
    severity: str
    score: float
    at: float  # event time of the judgement
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    cluster_id: str | None = None
    action: str = "none"
    id: str | None = None  # set when persisted

    def to_document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "cluster_id": self.cluster_id,
            "severity": self.severity,
            "score": round(self.score, 3),
            "at": iso(self.at),
            "summary": self.summary,
            "action": self.action,
            "evidence": self.evidence,
        }

    def identity(self) -> tuple[Any, ...]:
        """What makes two runs' findings "the same" (ids and wall-clock excluded)."""
        return (self.detector, self.key_id, self.cluster_id, self.severity, round(self.at, 3), self.action)


@dataclass(slots=True)
class CaseNotice:
    """One message for people: a case opened, or rose in severity.

    A case gathers every finding about one key (or one cluster) over an
    episode; people hear about it when it opens at a severity worth their
    time and again only when it escalates, never once per window. Lower
    evidence is recorded as findings and stays out of anyone's inbox."""

    case_id: str  # deterministic: the same events give the same case ids
    kind: str  # "opened" | "escalated"
    key_id: str | None
    key_name: str | None
    cluster_id: str | None
    severity: str
    at: float  # event time
    summary: str
    action: str  # what the decision was ("none" when only people are told)
    enforcement: str  # the key's enforcement mode when the notice was made
    finding: FindingRecord | None = None
    members: int = 1

    def to_document(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "kind": self.kind,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "cluster_id": self.cluster_id,
            "severity": self.severity,
            "at": iso(self.at),
            "summary": self.summary,
            "action": self.action,
            "enforcement": self.enforcement,
            "finding_id": self.finding.id if self.finding is not None else None,
            "members": self.members,
        }


@dataclass(slots=True)
class ActionRecord:
    key_id: str
    key_name: str
    action: str
    at: float
    severity: str
    reason: str
    enforcement: str  # "enforce" | "monitor" | "shadow"
    finding: FindingRecord
    applied: bool = False
    outcome: str = ""

    def to_document(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "key_name": self.key_name,
            "action": self.action,
            "at": iso(self.at),
            "severity": self.severity,
            "reason": self.reason,
            "enforcement": self.enforcement,
            "applied": self.applied,
            "outcome": self.outcome,
            "finding_id": self.finding.id,
        }
