"""Inventory tables (SQLAlchemy 2.x typed ORM).

The inventory never holds plaintext key material: versions carry the SHA-256
of the key and a short display prefix only. Ids are UUIDv7 strings, so they
sort by creation time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from keyops.domain.ids import uuid7
from keyops.inventory.types import JSONDocument, UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDocument(), list[Any]: JSONDocument()}


ID = String(36)


class Key(Base):
    __tablename__ = "keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    profile: Mapped[str] = mapped_column(String(64), ForeignKey("profiles.name"), index=True)
    policy: Mapped[str] = mapped_column(String(64), ForeignKey("rotation_policies.name"))
    issuer: Mapped[str] = mapped_column(String(32), default="native")
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    profile_overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    issuer_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    # Precomputed from the policy (plus jitter) so "due for rotation" is one
    # index range scan instead of a computation over every key.
    next_rotation_at: Mapped[datetime | None] = mapped_column(default=None)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)

    versions: Mapped[list[KeyVersion]] = relationship(
        back_populates="key", order_by="KeyVersion.number", cascade="all, delete-orphan"
    )
    destinations: Mapped[list[Destination]] = relationship(
        back_populates="key", order_by="Destination.position", cascade="all, delete-orphan"
    )

    __table_args__ = (
        # Keys due for rotation: WHERE state = 'active' AND next_rotation_at <= now.
        Index("ix_keys_due", "state", "next_rotation_at"),
        Index("ix_keys_expires_at", "expires_at"),
    )


class KeyVersion(Base):
    __tablename__ = "key_versions"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    key_id: Mapped[str] = mapped_column(ID, ForeignKey("keys.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    display_prefix: Mapped[str] = mapped_column(String(64), default="")
    # For externally minted material (an AWS access key id): non-secret.
    external_id: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    rotation_id: Mapped[str | None] = mapped_column(ID, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(default=None)
    grace_ends_at: Mapped[datetime | None] = mapped_column(default=None)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Last verified use of this version (set by verify); usage-aware retirement
    # retires a previous version once it has been idle long enough.
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)

    key: Mapped[Key] = relationship(back_populates="versions")

    __table_args__ = (
        UniqueConstraint("key_id", "number"),
        # Versions whose grace ends: WHERE state = 'previous' AND grace_ends_at <= now.
        Index("ix_key_versions_grace", "state", "grace_ends_at"),
        Index("ix_key_versions_key_state", "key_id", "state"),
    )


class Profile(Base):
    __tablename__ = "profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RotationPolicy(Base):
    __tablename__ = "rotation_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Destination(Base):
    __tablename__ = "destinations"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    key_id: Mapped[str] = mapped_column(ID, ForeignKey("keys.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(String(1024))
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    key: Mapped[Key] = relationship(back_populates="destinations")

    __table_args__ = (UniqueConstraint("key_id", "uri"),)


class Rotation(Base):
    """A persisted, resumable rotation: the operation log of the rotation engine."""

    __tablename__ = "rotations"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    key_id: Mapped[str] = mapped_column(ID, ForeignKey("keys.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(32), default="planned")
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|finished|failed|rolled_back
    trigger: Mapped[str] = mapped_column(String(32), default="manual")
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128), default="")
    old_version_id: Mapped[str | None] = mapped_column(ID, default=None)
    new_version_id: Mapped[str | None] = mapped_column(ID, default=None)
    grace_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    steps: Mapped[list[Any]] = mapped_column(default=list)
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        # Unfinished rotations whose lease expired: the resume job's query.
        Index("ix_rotations_status_lease", "status", "lease_expires_at"),
    )


class Finding(Base):
    __tablename__ = "findings"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    key_id: Mapped[str | None] = mapped_column(ID, ForeignKey("keys.id", ondelete="SET NULL"), default=None)
    cluster_id: Mapped[str | None] = mapped_column(ID, default=None, index=True)
    detector: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    summary: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    action: Mapped[str] = mapped_column(String(16), default="none")
    status: Mapped[str] = mapped_column(String(16), default="open")
    observed_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The case this finding belongs to (NULL: low evidence no case gathered).
    case_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("cases.id", ondelete="SET NULL"), default=None, index=True
    )
    #: The mode the finding's decision was made under (enforce, monitor,
    #: shadow); NULL when the finding carried no decision.
    enforcement: Mapped[str | None] = mapped_column(String(16), default=None)
    #: What makes a finding the same one again (detector, key or cluster,
    #: window, severity, action: ``keyops.lifecycle.findings.dedup_key``).
    #: Unique, so the events replayed after a restart from a checkpoint
    #: never store a finding twice. NULL for findings stored before it existed.
    dedup_key: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)

    __table_args__ = (Index("ix_findings_key_created", "key_id", "created_at"),)


class DetectionCheckpoint(Base):
    """The detection engine's latest checkpoint under one name (one node's
    engine, or one partition): ``keyops.detect.snapshot`` bytes and the
    position of the last event they cover. Overwritten in place."""

    __tablename__ = "detection_checkpoints"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The snapshot format (``keyops.detect.snapshot.FORMAT``) it was written in.
    format: Mapped[int] = mapped_column(Integer)
    #: The position of the last event covered, as the writer printed it (for people).
    position: Mapped[str] = mapped_column(String(200), default="")
    keys: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class Case(Base):
    """One episode of trouble with one key (or one cluster of keys): what
    people are told about, once when it opens and again only when it rises
    in severity. Its findings point at it (``findings.case_id``)."""

    __tablename__ = "cases"

    #: The engine's deterministic case id (the same events give the same id).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(ID, ForeignKey("keys.id", ondelete="SET NULL"), default=None)
    cluster_id: Mapped[str | None] = mapped_column(ID, default=None, index=True)
    #: Highest severity any notice of this case carried.
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | acknowledged | closed
    #: The mode of the latest notice: "shadow" cases are recorded, never sent.
    enforcement: Mapped[str] = mapped_column(String(16), default="enforce")
    #: Strongest action decided so far ("none" when people are only told).
    action: Mapped[str] = mapped_column(String(16), default="none")
    summary: Mapped[str] = mapped_column(Text, default="")
    finding_count: Mapped[int] = mapped_column(Integer, default=0)
    members: Mapped[int] = mapped_column(Integer, default=1)
    #: Highest severity already announced (or recorded, in shadow): a notice
    #: processed twice is not sent twice.
    noticed_severity: Mapped[str] = mapped_column(String(16), default="none")
    opened_at: Mapped[datetime] = mapped_column()  # event time of the opening notice
    last_seen_at: Mapped[datetime] = mapped_column()  # event time of the latest notice or finding
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_cases_key_status", "key_id", "status"), Index("ix_cases_status", "status"))


class InboundAlert(Base):
    """Every webhook delivery received, deduplicated by (source, delivery_id)."""

    __tablename__ = "inbound_alerts"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    source: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    verdict: Mapped[str] = mapped_column(String(32))
    key_ids: Mapped[list[Any]] = mapped_column(default=list)
    action: Mapped[str] = mapped_column(String(32), default="none")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (UniqueConstraint("source", "delivery_id"),)


class AuditEvent(Base):
    """One link of the hash chain. ``prev_hash`` is unique, so two writers can
    never both extend the same tail: a forked chain is impossible by schema."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    id: Mapped[str] = mapped_column(ID, unique=True, default=uuid7)
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(ID, default=None, index=True)
    key_name: Mapped[str | None] = mapped_column(String(128), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))
    #: "hmac-sha256" (sealed under the audit key) or "sha256" (legacy,
    #: written before the key existed). No default: every writer says which.
    hash_alg: Mapped[str] = mapped_column(String(16))
    #: Fingerprint of the audit key that sealed the event (None for legacy).
    seal_key_id: Mapped[str | None] = mapped_column(String(16), default=None)


class AuditHead(Base):
    """The single row that names the chain's tail. Appenders lock it, so
    concurrent appends serialise; verify compares it with the last event, so a
    deleted tail is detected too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    hash: Mapped[str] = mapped_column(String(64))


class ApiToken(Base):
    """Credentials of HTTP API callers (gateways, monitoring). Stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(64), default="")
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class OutboxEvent(Base):
    """An outbound announcement, written in the same transaction as the change
    it announces; ``seq`` orders delivery."""

    __tablename__ = "outbox_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(ID, unique=True, default=uuid7)
    type: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(ID, default=None, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxDelivery(Base):
    """One event's delivery to one sink, retried with backoff until it lands."""

    __tablename__ = "outbox_deliveries"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=uuid7)
    event_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("outbox_events.seq", ondelete="CASCADE")
    )
    sink: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        UniqueConstraint("event_seq", "sink"),
        Index("ix_outbox_deliveries_due", "status", "next_attempt_at"),
    )


class UsageMinute(Base):
    """Per-key usage aggregated by minute (shown by ``keys show``, pruned by a job)."""

    __tablename__ = "usage_minutes"

    key_id: Mapped[str] = mapped_column(ID, ForeignKey("keys.id", ondelete="CASCADE"), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("ix_usage_minutes_minute", "minute"),)


class KeyChange(Base):
    """The change log behind the verify cache: one row per committed change to
    a key, its versions, a profile or an API token (written by
    ``keyops.inventory.changes``), so every replica can reload just what
    changed. ``key_id`` is NULL for "reload everything" (bulk updates)."""

    __tablename__ = "key_changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    key_id: Mapped[str | None] = mapped_column(ID, default=None)
    kind: Mapped[str] = mapped_column(String(16), default="key")  # key | profile | token | all
    changed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
