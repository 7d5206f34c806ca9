"""The detection service: the one door into the engine, live or replayed.

``POST /v1/usage`` (the daemon) and ``keyops replay`` both call
:meth:`DetectionService.ingest` with parsed events (``keyops.detect.events.
parse_event``); the service resolves each event's key in the inventory,
feeds the engine, persists what the engine found and applies the actions.
Because both paths run this code over the same engine, the same events give
the same findings.

Thread safety: one lock serialises ``ingest``/``advance``/``flush`` (the
engine is single-threaded by design, which is also what makes it
deterministic). Findings are persisted and actions applied *after* the lock
is released, so a slow database never blocks other intake threads for long.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from keyops.config import DETECTION_ENFORCEMENT, DetectionSettings
from keyops.detect import snapshot
from keyops.detect.buffer import MAX_BUFFERED
from keyops.detect.config import DetectorConfig
from keyops.detect.engine import Engine, Output
from keyops.detect.events import MAX_FUTURE_SECONDS, MAX_PROMPT_CHARS, UsageEvent, parse_event
from keyops.detect.model import ActionRecord, CaseNotice, FindingRecord, KeyMeta, iso
from keyops.detect.refusals import UNKNOWN_KEY, UNKNOWN_PROFILE, Rejection
from keyops.domain.durations import parse_duration
from keyops.domain.specs import SpecError, parse_profile
from keyops.errors import KeyOpsError
from keyops.inventory import models
from keyops.lifecycle.findings import FindingService
from keyops.lifecycle.specs import SpecRegistry

log = logging.getLogger("keyops.detect")
CACHE_MAX = 200_000
NEGATIVE_TTL = 30.0
PROFILE_TTL = 60.0


@dataclass
class IngestResult:
    """What one call produced: findings (persisted unless dry run), actions
    (applied unless dry run, monitor or shadow mode), case notices (sent
    unless dry run or shadow), and rejected events by index, each with a
    reason code from ``keyops.detect.refusals.REASONS``."""

    findings: list[FindingRecord] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    notifications: list[CaseNotice] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: Findings the database refused (logged; the rest were stored).
    unrecorded: int = 0

    def extend(self, other: IngestResult) -> None:
        self.findings.extend(other.findings)
        self.actions.extend(other.actions)
        self.notifications.extend(other.notifications)
        self.rejected.extend(other.rejected)
        self.unrecorded += other.unrecorded


class DetectionService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        specs: SpecRegistry,
        findings: FindingService,
        *,
        lateness: float = 5.0,
        idle_evict: float = 3600.0,
        idle_forget: float = 7 * 86400.0,
        dry_run: bool = False,
        max_future: float = MAX_FUTURE_SECONDS,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
        enforcement: str = "profile",
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        if enforcement not in DETECTION_ENFORCEMENT:
            raise ValueError(f"enforcement must be one of {', '.join(DETECTION_ENFORCEMENT)}")
        self._sessions = sessions
        #: "shadow" forces every decision into shadow mode, whatever its profile says.
        self.enforcement = enforcement
        #: The intake's limits on one event ([detection] settings): the same
        #: for the live intake and for replay, so both reject the same events.
        self.max_future = max_future
        self.max_prompt_chars = max_prompt_chars
        self._specs = specs
        self.findings = findings
        self.dry_run = dry_run
        self.engine = Engine(lateness=lateness, idle_hot=idle_evict, idle_cold=idle_forget, max_buffered=max_buffered)
        self._lock = threading.Lock()
        self._metas: OrderedDict[str, KeyMeta] = OrderedDict()
        self._unknown: dict[str, float] = {}
        self._profiles: dict[str, DetectorConfig] = {}
        self._profiles_at = 0.0

    def replay_session(self, *, dry_run: bool) -> DetectionService:
        """A fresh engine over the same inventory (``keyops replay``)."""
        return DetectionService(
            self._sessions,
            self._specs,
            self.findings,
            lateness=self.engine.lateness,
            idle_evict=self.engine.idle_hot,
            idle_forget=self.engine.idle_cold,
            dry_run=dry_run,
            max_future=self.max_future,
            max_prompt_chars=self.max_prompt_chars,
            enforcement=self.enforcement,
            max_buffered=self.engine.max_buffered,
        )

    @classmethod
    def from_settings(
        cls, sessions: sessionmaker[Session], specs: SpecRegistry, findings: FindingService, settings: DetectionSettings
    ) -> DetectionService:
        return cls(
            sessions,
            specs,
            findings,
            lateness=float(parse_duration(settings.lateness)),
            idle_evict=float(parse_duration(settings.idle_evict)),
            idle_forget=float(parse_duration(settings.idle_forget)),
            max_future=float(parse_duration(settings.max_future)),
            max_prompt_chars=settings.max_prompt_chars,
            enforcement=settings.enforcement,
            max_buffered=settings.max_buffered,
        )

    def parse(self, doc: Any, *, now: float | None) -> UsageEvent | str:
        """One decoded event checked against this service's limits (the
        event or a one-line reason)."""
        return parse_event(doc, now=now, max_future=self.max_future, max_prompt_chars=self.max_prompt_chars)

    # ------------------------------------------------------------- intake --

    def ingest(self, events: Sequence[UsageEvent], now: float | None = None) -> IngestResult:
        """Feed parsed events (any order within the lateness); returns what
        was found and done. Unknown keys, late events and events the engine
        has no room for are rejected by index, with a reason code.

        ``now`` is the intake's wall clock (the live daemon passes it): the
        engine's watermark then never runs ahead of it, and events stamped
        ahead of it wait until it reaches them. Replay passes none, so event
        time alone decides and a file gives the same findings on any day."""
        result = IngestResult()
        metas = self._resolve({e.key_ref for e in events})
        out = Output()
        with self._lock:
            profiles = self._configs()
            if now is not None:
                self.engine.tick(now)
            push = self.engine.push
            for i, event in enumerate(events):
                meta = metas.get(event.key_ref)
                if meta is None:
                    result.rejected.append(
                        Rejection(i, UNKNOWN_KEY, "unknown key: no key in the inventory has this id or hash")
                    )
                    continue
                cfg = profiles.get(meta.profile) if not meta.overrides else self._overridden(meta)
                if cfg is None:
                    result.rejected.append(
                        Rejection(i, UNKNOWN_PROFILE, f"the key's profile {meta.profile!r} does not exist")
                    )
                    continue
                refusal = push(event, meta, cfg)
                if refusal is not None:
                    result.rejected.append(Rejection(i, refusal.reason, refusal.error))
            self.engine.release(out)
        self._finish(out, result)
        return result

    def advance(self, now: float | None = None) -> IngestResult:
        """Release buffered events by wall clock (the daemon calls this every second)."""
        out = Output()
        with self._lock:
            self.engine.advance(time.time() if now is None else now, out)
        result = IngestResult()
        self._finish(out, result)
        return result

    def flush(self) -> IngestResult:
        """Release and judge everything buffered (end of a replay, shutdown)."""
        out = Output()
        with self._lock:
            self.engine.flush(out)
        result = IngestResult()
        self._finish(out, result)
        return result

    # -------------------------------------------------------- checkpoints --

    def snapshot(self) -> tuple[bytes, str, int]:
        """The engine's state as bytes (``keyops.detect.snapshot``), the
        position of the last event it covers (the intake's count of events
        taken, and the newest event time), and the number of keys."""
        with self._lock:
            engine = self.engine
            position = f"event {engine._seq} at {iso(engine._max_ts) if engine._max_ts > -math.inf else '-'}"
            packed = snapshot.pack_engine(engine, position=position)
            keys = len(engine.keys)
        return snapshot.seal(packed), position, keys

    def revision(self) -> tuple[float, ...]:
        """Changes whenever the engine's state may have: events taken or
        processed, event-time timers fired (windows closed, baselines learned)."""
        with self._lock:
            e = self.engine
            return (e._seq, e.processed, e.late, e._next_window, e._next_coordination, e._next_housekeeping)

    def restore(self, data: bytes) -> str:
        """Replace the engine with a fresh one restored from ``data``; each
        key takes its profile as it is now. Raises ``SnapshotError`` (the
        engine is then left as it was)."""
        old = self.engine
        engine = Engine(
            lateness=old.lateness, idle_hot=old.idle_hot, idle_cold=old.idle_cold, max_buffered=old.max_buffered
        )
        with self._lock:
            profiles = self._configs()

            def current(meta: KeyMeta) -> DetectorConfig | None:
                return profiles.get(meta.profile) if not meta.overrides else self._overridden(meta)

            position = snapshot.restore_engine(engine, data, configs=current)
            self.engine = engine
        return str(position)

    def _finish(self, out: Output, result: IngestResult) -> None:
        """Persist the findings and the cases' notices, then apply the
        actions, each on its own: a finding the database refuses (or an
        action that fails) is logged and counted, and never costs another
        key its finding or its action."""
        if self.enforcement == "shadow":
            for action in out.actions:
                action.enforcement = "shadow"
            for notice in out.notifications:
                notice.enforcement = "shadow"
        result.findings.extend(out.findings)
        result.actions.extend(out.actions)
        result.notifications.extend(out.notifications)
        if self.dry_run:
            return
        modes = {id(n.finding): n.enforcement for n in out.notifications if n.finding is not None}
        modes.update({id(a.finding): a.enforcement for a in out.actions})
        if self.enforcement == "shadow":
            modes.update({id(f): "shadow" for f in out.findings if f.action != "none"})
        replayed: set[int] = set()
        try:
            result.unrecorded += self.findings.record(out.findings, out.notifications, modes, replayed)
        except SQLAlchemyError as exc:
            result.unrecorded += len(out.findings)
            log.warning("findings not stored", extra={"count": len(out.findings), "error": type(exc).__name__})
        for action in out.actions:
            try:
                if id(action.finding) in replayed and self.findings.applied_before(action):
                    # Events replayed after a restart from a checkpoint: this
                    # decision was taken (and audited) before the restart.
                    action.outcome = "already applied before a restart"
                    continue
                self.findings.apply(action)
            except SQLAlchemyError as exc:
                action.outcome = "not applied: the inventory refused the change"
                log.warning("detector action failed", extra={"key_id": action.key_id, "error": type(exc).__name__})

    # ------------------------------------------------------------ lookups --

    def _configs(self) -> dict[str, DetectorConfig]:
        now = time.monotonic()
        if not self._profiles or now - self._profiles_at > PROFILE_TTL:
            self._profiles = {p.name: DetectorConfig.of(p) for p, _ in self._specs.profiles()}
            self._profiles_at = now
        return self._profiles

    def _overridden(self, meta: KeyMeta) -> DetectorConfig | None:
        """The key's profile with its per-key overrides merged in (cached).
        Overrides that do not validate are ignored with a warning: the key
        is then judged by its plain profile, never by nothing."""
        cache_key = f"{meta.profile}\n{meta.overrides}"
        cfg = self._profiles.get(cache_key)
        if cfg is not None:
            return cfg
        base = self._profiles.get(meta.profile)
        if base is None:
            return None
        try:
            profile = self._specs.profile(meta.profile)
            doc = profile.to_document()
            doc.pop("name", None)
            cfg = DetectorConfig.of(parse_profile(meta.profile, _merge(doc, orjson.loads(meta.overrides))))
        except (SpecError, KeyOpsError, ValueError) as exc:
            log.warning("ignoring invalid profile overrides", extra={"key_id": meta.key_id, "error": str(exc)})
            cfg = base
        self._profiles[cache_key] = cfg
        return cfg

    def _resolve(self, refs: Iterable[str]) -> dict[str, KeyMeta]:
        found: dict[str, KeyMeta] = {}
        missing_ids: list[str] = []
        missing_hashes: list[str] = []
        now = time.monotonic()
        with self._lock:
            for ref in refs:
                meta = self._metas.get(ref)
                if meta is not None:
                    found[ref] = meta
                elif now - self._unknown.get(ref, -1e9) > NEGATIVE_TTL:
                    kind, _, value = ref.partition(":")
                    (missing_ids if kind == "id" else missing_hashes).append(value)
        if not missing_ids and not missing_hashes:
            return found
        fetched: dict[str, KeyMeta] = {}
        with self._sessions() as session:
            for chunk in _chunks(missing_ids):
                rows = session.execute(
                    select(
                        models.Key.id,
                        models.Key.name,
                        models.Key.owner,
                        models.Key.profile,
                        models.Key.profile_overrides,
                    ).where(models.Key.id.in_(chunk))
                )
                for key_id, name, owner, profile, overrides in rows:
                    fetched["id:" + key_id] = KeyMeta(key_id, name, owner, profile, _canonical(overrides))
            for chunk in _chunks(missing_hashes):
                rows2: Any = session.execute(
                    select(
                        models.KeyVersion.secret_hash,
                        models.Key.id,
                        models.Key.name,
                        models.Key.owner,
                        models.Key.profile,
                        models.Key.profile_overrides,
                    )
                    .join(models.Key, models.Key.id == models.KeyVersion.key_id)
                    .where(models.KeyVersion.secret_hash.in_(chunk))
                )
                for secret_hash, key_id, name, owner, profile, overrides in rows2:
                    fetched["hash:" + secret_hash] = KeyMeta(key_id, name, owner, profile, _canonical(overrides))
        with self._lock:
            for ref, meta in fetched.items():
                self._metas[ref] = meta
                found[ref] = meta
            while len(self._metas) > CACHE_MAX:
                self._metas.popitem(last=False)
            for value in missing_ids:
                if "id:" + value not in fetched:
                    self._unknown["id:" + value] = now
            for value in missing_hashes:
                if "hash:" + value not in fetched:
                    self._unknown["hash:" + value] = now
            if len(self._unknown) > CACHE_MAX:
                self._unknown.clear()
        return found


def _canonical(overrides: Any) -> str:
    return orjson.dumps(overrides, option=orjson.OPT_SORT_KEYS).decode() if overrides else ""


def _merge(base: dict[str, Any], extra: Any) -> dict[str, Any]:
    """Deep merge of per-key overrides into a profile document."""
    if not isinstance(extra, dict):
        raise ValueError("profile overrides must be a table")
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
