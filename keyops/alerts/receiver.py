"""``POST /v1/alerts/{source}``: from a webhook delivery to an action on a key.

``receive(source, headers, body, now)`` answers ``AlertOutcome(status, body)``:

1. unknown or unconfigured source -> 404; body over ``alerts.max_body_bytes`` -> 413;
2. a source set to ``require_token`` needs a keyops API token allowing
   ``alerts:<source>`` -> 401 without a valid one, 403 naming the missing scope;
   then authenticity, by the format's own rules, before anything is parsed
   -> 401/403; a stale signed timestamp -> 401 (a possible replay);
3. parsing -> 400 on malformed JSON or a payload of the wrong shape;
4. an action the payload asks for that keyops does not know -> 400;
   the delivery is recorded in ``inbound_alerts`` (an id longer than the
   column as ``sha256:<hex>`` of the whole id); a (source, delivery id)
   seen before is answered 200 ``{"verdict": "duplicate"}`` and nothing
   else happens (only authentic deliveries get this far);
5. each key the alert names is looked up (name, id, leaked-token hash, AWS
   access key id); the rules decide the action; a finding is recorded for
   every acted-on key (it joins the key's live case or opens one: people get
   one ``case.opened``/``case.escalated`` message when it is news), then the action is
   applied through the lifecycle: suspend/revoke via ``KeyService``, rotate via
   ``app.rotations`` (in the background, so the sender gets its answer fast).
   Keys that do not exist make a recorded no-op (200). A report naming a
   retired or revoked version (leaked material, an access key id) is only
   recorded and notified: old material must not force rotation after rotation.

Refused deliveries (401/403/413/...) are logged but not stored: an attacker
must not be able to fill the inventory with junk. Unexpected exceptions are
bugs (the HTTP layer maps them to 500); fuzz tests hold that none occur.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from keyops import audit
from keyops.alerts import alertmanager, github, grafana, sns, standard
from keyops.alerts.actions import ROTATION_STARTED, ActionRunner, Plan, Planned, Rotator, action_doc, reason_of
from keyops.alerts.base import (
    AlertRejected,
    Delivery,
    Fetcher,
    HttpFetcher,
    KeyRef,
    clean,
    header,
    stored_delivery_id,
)
from keyops.alerts.rules import ACTIONS, decide, normalise_action, parse_rules, strongest
from keyops.config import AlertSettings
from keyops.domain.durations import parse_duration
from keyops.domain.redact import bounded, redact
from keyops.domain.scopes import alert_scope, allows
from keyops.domain.states import VersionState
from keyops.inventory.models import Finding, InboundAlert, Key, KeyVersion
from keyops.inventory.types import utcnow
from keyops.lifecycle.cases import note_alert
from keyops.lifecycle.keys import KeyService
from keyops.notify.outbox import anyone_wants, emit

log = logging.getLogger("keyops.alerts")
SOURCES = ("standard", "alertmanager", "grafana", "sns", "github")
_UUID_LEN = 36
#: Versions whose material no longer verifies: a report of one is recorded, never acted on.
_DEAD_VERSION_STATES = frozenset({VersionState.RETIRED.value, VersionState.REVOKED.value})


class TokenLookup(Protocol):
    """The API token an ``Authorization`` header carries: (name, scopes), or
    None when it carries none that is known and unrevoked. The HTTP layer
    passes its in-memory token table in; the receiver never reads tokens."""

    def __call__(self, authorization: str | None) -> tuple[str, Collection[str]] | None: ...


@dataclass
class AlertOutcome:
    """The HTTP answer: status code and a JSON-serialisable body."""

    status: int
    body: Any

    def json(self) -> bytes:
        return orjson.dumps(self.body)


def _seconds(value: str) -> float:
    return float(parse_duration(value))


def _bounded(doc: Any, limit: int = 4096) -> Any:
    """Evidence from senders, scrubbed of secrets and then bounded in size:
    cutting first could split a key inside its checksum, past recognition."""
    encoded = redact(orjson.dumps(clean(doc), default=str).decode("utf-8"))
    if len(encoded.encode("utf-8")) > limit:
        return {"truncated": True, "preview": encoded.encode("utf-8")[:limit].decode("utf-8", "ignore")}
    return orjson.loads(encoded)


def _check_requested_actions(delivery: Delivery) -> None:
    """An action a sender asks for must be one keyops knows: a typo or junk
    (``"explode"``) is the sender's error, refused before anything is stored."""
    for signal in delivery.signals:
        wanted = signal.requested_action
        if wanted and normalise_action(wanted) not in ACTIONS:
            raise AlertRejected(
                400, "unknown_action", f"unknown action {wanted[:32]!r}: use one of {', '.join(ACTIONS)}"
            )


class AlertReceiver:
    """``app.alerts``."""

    def __init__(
        self,
        settings: AlertSettings,
        sessions: sessionmaker[Session],
        keys: KeyService,
        *,
        rotator: Callable[[], Rotator | None] = lambda: None,
        fetcher: Fetcher | None = None,
        background: bool = True,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._fetch = fetcher or HttpFetcher(timeout=_seconds(settings.fetch_timeout))
        self._rules = parse_rules(settings.rules, allowed_requested=settings.allowed_requested)
        self._tolerance = _seconds(settings.tolerance)
        self._sns = sns.SnsVerifier(self._fetch, signature_versions=settings.sns.signature_versions)
        self._github = github.GitHubKeys(
            self._fetch, settings.github.meta_url, ttl=_seconds(settings.github.key_cache_ttl)
        )
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="keyops-alert") if background else None
        self._pending: set[Future[None]] = set()
        self._actions = ActionRunner(sessions, keys, rotator)

    # -- entry point ------------------------------------------------------

    def enabled(self, source: str) -> bool:
        return source in SOURCES and bool(getattr(self.settings, source).enabled)

    def requires_token(self, source: str) -> bool:
        return self.enabled(source) and bool(getattr(getattr(self.settings, source), "require_token", False))

    def receive(
        self,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
        *,
        tokens: TokenLookup | None = None,
    ) -> AlertOutcome:
        """Handle one delivery; never raises for anything a sender can send.
        ``tokens`` resolves keyops API tokens for sources that require one;
        without it such a source refuses every delivery."""
        now = now or utcnow()
        try:
            return self._receive(source, headers, body, now, tokens)
        except AlertRejected as exc:
            # Only a configured source's name is logged: the path segment is the
            # caller's text, and a cut piece of a key in it would match no pattern.
            named = source if source in SOURCES else "unknown"
            log.warning("alert delivery refused", extra={"source": named, "code": exc.code, "reason": exc.message})
            return AlertOutcome(exc.status, {"error": exc.code, "message": exc.message})
        except OperationalError:
            log.exception("alert delivery could not be recorded")
            return AlertOutcome(503, {"error": "unavailable", "message": "the inventory is unavailable; retry later"})

    def _receive(
        self, source: str, headers: Mapping[str, str], body: bytes, now: datetime, tokens: TokenLookup | None
    ) -> AlertOutcome:
        if not self.enabled(source):
            raise AlertRejected(404, "unknown_source", "no alert source of that name is configured")
        if len(body) > self.settings.max_body_bytes:
            raise AlertRejected(413, "too_large", f"the body is larger than {self.settings.max_body_bytes} bytes")
        if self.requires_token(source):
            self._check_token(source, headers, tokens)
        feedback: list[dict[str, Any]] | None = None
        delivery = self._authenticate_and_parse(source, headers, body, now)
        if source == "github":
            delivery, feedback = delivery  # type: ignore[misc]
        assert isinstance(delivery, Delivery)
        delivery.delivery_id = stored_delivery_id(delivery.delivery_id)
        if delivery.confirm_url is not None:
            return self._confirm_subscription(delivery)
        _check_requested_actions(delivery)
        plan = self._plan(delivery)
        alert_id = self._record(plan)
        if alert_id is None:
            # Senders re-send what they think may have been lost (Alertmanager
            # repeats a group every repeat_interval): an authentic delivery
            # already handled is a success for them, not a failure to retry.
            return self._duplicate(delivery.delivery_id, feedback)
        self._apply(alert_id, plan)
        return self._answer(plan, feedback)

    @staticmethod
    def _check_token(source: str, headers: Mapping[str, str], tokens: TokenLookup | None) -> None:
        """The keyops token a ``require_token`` source asks for: a second
        factor beside a signature, or the credential itself where the sender
        (Alertmanager, Grafana without HMAC) can only present a bearer token."""
        scope = alert_scope(source)
        caller = None if tokens is None else tokens(header(headers, "Authorization"))
        if caller is None:
            raise AlertRejected(
                401,
                "missing_token",
                f"alerts.{source}.require_token is set: send Authorization: Bearer <keyops token with scope {scope}>",
            )
        name, scopes = caller
        if not allows(scopes, scope):
            raise AlertRejected(403, "missing_scope", f"token {name!r} lacks the scope {scope!r}")

    def _authenticate_and_parse(
        self, source: str, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Delivery | tuple[Delivery, list[dict[str, Any]]]:
        cfg = self.settings
        if source == "standard":
            msg_id, sent = standard.authenticate(
                headers, body, secrets=cfg.standard.secrets, now=now, tolerance=self._tolerance
            )
            return standard.parse(body, msg_id=msg_id, sent=sent)
        if source == "alertmanager":
            am = cfg.alertmanager
            if not am.require_token:  # else the keyops token, checked already, is its credential
                alertmanager.authenticate(
                    headers, bearer=am.bearer_token, username=am.basic_username, password=am.basic_password
                )
            return alertmanager.parse(body, key_labels=am.key_labels)
        if source == "grafana":
            gf = cfg.grafana
            delivery_id, sent_at = grafana.authenticate(
                headers,
                body,
                hmac_secret=gf.hmac_secret,
                hmac_header=gf.hmac_header,
                timestamp_header=gf.timestamp_header,
                bearer=gf.bearer_token,
                username=gf.basic_username,
                password=gf.basic_password,
                now=now,
                tolerance=self._tolerance,
            )
            return grafana.parse(body, delivery_id=delivery_id, sent=sent_at, key_labels=gf.key_labels)
        if source == "sns":
            doc = self._sns.authenticate(
                headers, body, topic_arns=cfg.sns.topic_arns, now=now, tolerance=_seconds(cfg.sns.tolerance)
            )
            return sns.parse(doc, key_dimensions=cfg.sns.key_dimensions)
        github.authenticate(headers, body, self._github)
        return github.parse(body)

    # -- SNS subscription -------------------------------------------------

    def _confirm_subscription(self, delivery: Delivery) -> AlertOutcome:
        assert delivery.confirm_url is not None
        confirmed = False
        error = ""
        if self.settings.sns.auto_confirm:
            try:
                self._fetch(delivery.confirm_url)
                confirmed = True
            except AlertRejected as exc:
                error = exc.message
            except Exception as exc:  # any client's network failure: SNS resends the confirmation
                error = f"{type(exc).__name__}"
        verdict = "subscription_confirmed" if confirmed else "subscription_pending"
        with self._sessions() as session:
            try:
                with session.begin():
                    session.add(
                        InboundAlert(
                            source=delivery.source,
                            delivery_id=delivery.delivery_id,
                            verdict=verdict,
                            key_ids=[],
                            action="none",
                            detail={"note": "SubscriptionConfirmation", "error": error},
                        )
                    )
            except IntegrityError:
                return self._duplicate(delivery.delivery_id, None)
        if error:
            raise AlertRejected(503, "confirm_failed", f"could not confirm the subscription: {error}")
        return AlertOutcome(200, {"verdict": verdict, "delivery_id": delivery.delivery_id})

    # -- planning ---------------------------------------------------------

    def _lookup(self, session: Session, ref: KeyRef) -> tuple[Key, KeyVersion | None] | None:
        """The key a reference names, and the version when the reference names
        one (leaked material, an access key id)."""
        if ref.kind in ("token_hash", "access_key_id"):
            column = KeyVersion.secret_hash if ref.kind == "token_hash" else KeyVersion.external_id
            stmt = select(Key, KeyVersion).join(KeyVersion, KeyVersion.key_id == Key.id).where(column == ref.value)
            row = session.execute(stmt.limit(1)).first()
            return None if row is None else (row[0], row[1])
        if ref.kind == "id":
            by = select(Key).where(Key.id == ref.value)
        elif ref.kind == "name":
            by = select(Key).where(Key.name == ref.value)
        else:  # "key": a name, or an id
            field = Key.id if len(ref.value) == _UUID_LEN and ref.value.count("-") == 4 else Key.name
            by = select(Key).where(field == ref.value)
        key = session.execute(by.limit(1)).scalars().first()
        return None if key is None else (key, None)

    def _plan(self, delivery: Delivery) -> Plan:
        plan = Plan(delivery=delivery)
        with self._sessions() as session:
            for signal in delivery.signals:
                if not signal.keys:
                    plan.keyless += 1
                    continue
                found: dict[str, tuple[Key, list[KeyVersion]]] = {}
                for ref in signal.keys:
                    hit = self._lookup(session, ref)
                    if hit is None:
                        plan.unknown.append(ref)
                        continue
                    key, version = hit
                    versions = found.setdefault(key.id, (key, []))[1]
                    if version is not None:
                        versions.append(version)
                for key, versions in found.values():
                    action, rule = decide(
                        self._rules, delivery.source, signal.facts(), allowed_requested=self.settings.allowed_requested
                    )
                    dead = [v for v in versions if v.state in _DEAD_VERSION_STATES]
                    if versions and len(dead) == len(versions) and action != "none":
                        # Material that no longer works cannot be abused, and acting on
                        # it would let whoever holds an old version cut the owner off
                        # again and again: record it and tell a human instead.
                        numbers = ", ".join(f"v{v.number}" for v in dead)
                        action, rule = "notify", f"{rule} (reported version {numbers} is {dead[0].state}: not acted on)"
                        signal.evidence = {
                            **signal.evidence,
                            "reported_versions": [{"number": v.number, "state": v.state} for v in dead],
                        }
                    plan.planned.append(Planned(key.id, key.name, action, rule, signal))
        return plan

    # -- recording --------------------------------------------------------

    def _record(self, plan: Plan) -> str | None:
        """Store the delivery, the findings and their events in one
        transaction; None when the delivery id was seen before."""
        delivery = plan.delivery
        acted = [p for p in plan.planned if p.action != "none"]
        verdict = "acting" if acted else ("recorded" if plan.planned else "no_op")
        detail = {
            "signals": len(delivery.signals),
            "keyless_signals": plan.keyless,
            "unknown_keys": [r.to_document() for r in plan.unknown[:50]],
            "actions": [action_doc(p) for p in plan.planned],
            "note": delivery.note,
        }
        row = InboundAlert(
            source=delivery.source,
            delivery_id=delivery.delivery_id,
            received_at=utcnow(),
            verdict=verdict,
            key_ids=sorted({p.key_id for p in plan.planned}),
            action=strongest(p.action for p in plan.planned),
            detail=_bounded(detail, 16384),
        )
        actor = f"alert:{delivery.source}"
        try:
            with self._sessions.begin() as session:
                session.add(row)
                session.flush()
                for item in acted:
                    signal = item.signal
                    summary = bounded(signal.reason or signal.type or f"{signal.kind} alert", 500)
                    evidence = _bounded(
                        {**signal.evidence, "delivery_id": delivery.delivery_id, "type": signal.type, "rule": item.rule}
                    )
                    finding = Finding(
                        key_id=item.key_id,
                        detector=f"alert:{delivery.source}",
                        severity=signal.severity,
                        summary=summary,
                        evidence=evidence,
                        action=item.action,
                        status="open",
                        observed_at=delivery.occurred_at or utcnow(),
                    )
                    session.add(finding)
                    session.flush()
                    audit.append(
                        session,
                        actor=actor,
                        action="alert.received",
                        key_id=item.key_id,
                        key_name=item.key_name,
                        reason=summary,
                        details={
                            "delivery_id": delivery.delivery_id,
                            "finding_id": finding.id,
                            "action": item.action,
                            "rule": item.rule,
                        },
                    )
                    note_alert(session, key_id=item.key_id, key_name=item.key_name, finding=finding, action=item.action)
                    if anyone_wants(session, "finding.created"):
                        emit(
                            session,
                            "finding.created",
                            item.key_id,
                            {
                                "finding_id": finding.id,
                                "case_id": finding.case_id,
                                "key_id": item.key_id,
                                "key_name": item.key_name,
                                "detector": finding.detector,
                                "severity": finding.severity,
                                "summary": summary,
                                "action": item.action,
                                "evidence": evidence,
                            },
                        )
        except IntegrityError:
            return None
        return row.id

    # -- acting -----------------------------------------------------------

    def _apply(self, alert_id: str, plan: Plan) -> None:
        actor = f"alert:{plan.delivery.source}"
        background: list[Planned] = []
        for item in plan.planned:
            reason = reason_of(item.signal)
            if item.action in ("none", "notify"):
                item.result = "recorded"
            elif item.action in ("suspend", "revoke"):
                item.result = self._actions.transition(item, actor, reason)
            elif self._executor is not None and self._actions.has_rotator():
                item.result = ROTATION_STARTED
                background.append(item)
            else:
                item.result = self._actions.rotate(item, actor, reason)
        self._actions.finish(alert_id, plan)
        for item in background:
            reason = reason_of(item.signal)
            assert self._executor is not None
            future = self._executor.submit(self._rotate_later, alert_id, plan, item, actor, reason)
            with self._actions.lock:
                self._pending.add(future)
            future.add_done_callback(self._forget)

    def _rotate_later(self, alert_id: str, plan: Plan, item: Planned, actor: str, reason: str) -> None:
        try:
            item.result = self._actions.rotate(item, actor, reason)
        except Exception:  # a bug in the engine must not kill the worker thread silently
            log.exception("rotation requested by an alert crashed", extra={"key": item.key_name})
            item.result = "rotation crashed (see the log)"
        self._actions.finish(alert_id, plan)

    def _forget(self, future: Future[None]) -> None:
        with self._actions.lock:
            self._pending.discard(future)

    def resume_unfinished(self, now: datetime | None = None, *, older_than: float = 120.0) -> int:
        """See :meth:`ActionRunner.resume_unfinished` (the scheduler calls this)."""
        return self._actions.resume_unfinished(now, older_than=older_than)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait for background rotations (tests, graceful shutdown)."""
        import concurrent.futures

        with self._actions.lock:
            pending = list(self._pending)
        _done, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=False)

    # -- answer -----------------------------------------------------------

    @staticmethod
    def _duplicate(delivery_id: str, feedback: list[dict[str, Any]] | None) -> AlertOutcome:
        if feedback is not None:
            # GitHub reads an array; it stays one, each entry saying it was seen before.
            return AlertOutcome(200, [{**entry, "duplicate": True} for entry in feedback])
        return AlertOutcome(
            200,
            {
                "verdict": "duplicate",
                "delivery_id": delivery_id,
                "message": "this delivery was already received and handled: nothing was done again",
            },
        )

    def _answer(self, plan: Plan, feedback: list[dict[str, Any]] | None) -> AlertOutcome:
        if feedback is not None:
            # GitHub reads per-token feedback from the answer.
            matched = {r.value for p in plan.planned for r in p.signal.keys if r.kind == "token_hash"}
            for entry in feedback:
                if entry["token_hash"] in matched:
                    entry["label"] = "true_positive"
            return AlertOutcome(200, feedback)
        acted = [p for p in plan.planned if p.action != "none"]
        verdict = "acted" if acted else ("recorded" if plan.planned else "no_op")
        return AlertOutcome(
            200,
            {
                "verdict": verdict,
                "delivery_id": plan.delivery.delivery_id,
                "alerts": len(plan.delivery.signals),
                "keys": [
                    {"key_id": p.key_id, "name": p.key_name, "action": p.action, "result": p.result}
                    for p in plan.planned
                ],
                "unknown_keys": len(plan.unknown),
            },
        )
