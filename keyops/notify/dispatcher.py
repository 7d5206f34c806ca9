"""Deliver the outbox: claim due deliveries, send them, retry with backoff.

Guarantees:

- nothing is lost: a delivery stays ``pending`` until a sink answers 2xx
  (``notify.max_attempts`` = 0 retries forever, with capped backoff);
- per-key order: a delivery is only claimed when no earlier delivery of the
  same key to the same sink is still pending, so consumers see ``key.rotated``
  v2 before v3 even if v2 needed ten attempts;
- nothing blocks anything else: a failing sink only delays its own
  deliveries of the same key; other keys and other sinks go on;
- several replicas may run this at once: claims are row leases taken with
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers with
  ``BEGIN IMMEDIATE``), sends happen outside any transaction.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from keyops.config import NotifySettings
from keyops.domain.durations import parse_duration
from keyops.inventory.models import OutboxDelivery, OutboxEvent
from keyops.inventory.types import utcnow
from keyops.logs import redact
from keyops.notify.outbox import Route, install_routes
from keyops.notify.webhooks import EventData, Sink, SlackSink, WebhookSink

if TYPE_CHECKING:  # httpx is imported when the dispatcher first sends (CLI start-up stays fast)
    import httpx

log = logging.getLogger("keyops.notify")
MAX_ROUNDS = 50
#: Deliveries to one sink sent one after another by one thread; a transport
#: failure (refused, timeout) stops the chunk, so a hanging sink costs one
#: timeout per chunk, not one per delivery.
CHUNK = 4
SKIPPED = "skipped: the sink failed earlier in this round"


@dataclass
class DispatchReport:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as ``keyops events list`` shows it."""

    id: str
    event_id: str
    event_seq: int
    type: str
    key_id: str | None
    key_name: str | None
    sink: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    delivered_at: datetime | None
    created_at: datetime


def _seconds(value: str) -> float:
    return float(parse_duration(value))


def backoff(attempts: int, initial: float, maximum: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with +-20% jitter, capped (attempts counts from 1)."""
    base: float = min(maximum, initial * float(2 ** min(max(attempts - 1, 0), 30)))
    jitter: float = 0.8 + 0.4 * rand()
    return max(0.0, base * jitter)


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return redact(first)[:500]


class Dispatcher:
    """``app.notify``: delivers due outbox entries to the configured sinks."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: NotifySettings,
        sinks: Mapping[str, Sink],
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self.sinks = dict(sinks)
        self._timeout = _seconds(settings.timeout)
        # A claim must outlive the slowest round, or another replica could
        # take the deliveries over mid-send (duplicates, order lost).
        chunks = math.ceil(settings.batch_size / CHUNK) + len(sinks)
        slowest_round = self._timeout * CHUNK * math.ceil(chunks / settings.concurrency) + 30
        self._lease = timedelta(seconds=max(_seconds(settings.lease), slowest_round))
        self._initial = _seconds(settings.backoff_initial)
        self._max = _seconds(settings.backoff_max)
        self._transport = transport
        self._ssl: Any = None  # built once: loading the CA bundle costs ~0.2 s per client
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql" if sessions.kw.get("bind") else False

    # -- claiming ---------------------------------------------------------

    def _claim(self, now: datetime, worker_id: str, skip_sinks: set[str]) -> list[tuple[str, str, EventData]]:
        d, e = OutboxDelivery, OutboxEvent
        earlier_d, earlier_e = aliased(OutboxDelivery), aliased(OutboxEvent)
        blocked = (
            exists()
            .where(earlier_d.event_seq == earlier_e.seq)
            .where(earlier_d.sink == d.sink)
            .where(earlier_d.status == "pending")
            .where(earlier_d.event_seq < d.event_seq)
            .where(earlier_e.key_id == e.key_id)
        )
        stmt = (
            select(d, e)
            .join(e, e.seq == d.event_seq)
            .where(d.status == "pending", d.next_attempt_at <= now)
            .where(or_(d.lease_expires_at.is_(None), d.lease_expires_at < now))
            .where(or_(e.key_id.is_(None), ~blocked))
            .where(d.sink.not_in(sorted(skip_sinks)))
            .order_by(d.event_seq, d.sink)
            .limit(self._settings.batch_size)
        )
        if self._postgres:
            stmt = stmt.with_for_update(of=d, skip_locked=True)
        claimed: list[tuple[str, str, EventData]] = []
        with self._sessions.begin() as session:
            for delivery, event in session.execute(stmt).all():
                delivery.lease_owner = worker_id
                delivery.lease_expires_at = now + self._lease
                data = EventData(
                    seq=event.seq,
                    id=event.id,
                    type=event.type,
                    key_id=event.key_id,
                    payload=dict(event.payload or {}),
                    created_at=event.created_at,
                )
                claimed.append((delivery.id, delivery.sink, data))
        return claimed

    # -- sending ----------------------------------------------------------

    def _send(self, client: httpx.Client, sink_name: str, event: EventData) -> tuple[str | None, bool]:
        """(None, False) on success, else a one-line error and whether the
        sink could not be reached at all (then the rest of its chunk waits)."""
        sink = self.sinks.get(sink_name)
        if sink is None:
            return f"sink {sink_name!r} is no longer configured", False
        import httpx

        try:
            request = sink.request(event, utcnow())
            response = client.post(request.url, content=request.body, headers=request.headers)
        except httpx.HTTPError as exc:
            return (_one_line(f"{type(exc).__name__}: {exc}") or type(exc).__name__), True
        if 200 <= response.status_code < 300:
            return None, False
        return f"HTTP {response.status_code} from the sink", False

    def _send_chunk(
        self, client: httpx.Client, sink_name: str, items: list[tuple[str, EventData]], broken: set[str]
    ) -> list[tuple[str, str, str | None]]:
        results: list[tuple[str, str, str | None]] = []
        for delivery_id, event in items:
            if sink_name in broken:
                results.append((delivery_id, sink_name, SKIPPED))
                continue
            error, unreachable = self._send(client, sink_name, event)
            results.append((delivery_id, sink_name, error))
            if unreachable:
                broken.add(sink_name)
        return results

    def _record(
        self, results: Sequence[tuple[str, str, str | None]], now: datetime, worker_id: str, report: DispatchReport
    ) -> None:
        with self._sessions.begin() as session:
            stmt = select(OutboxDelivery).where(OutboxDelivery.id.in_([r[0] for r in results]))
            if self._postgres:
                stmt = stmt.with_for_update()
            rows = {row.id: row for row in session.execute(stmt).scalars()}
            for delivery_id, sink_name, error in results:
                row = rows.get(delivery_id)
                if row is None or row.lease_owner != worker_id or row.status != "pending":
                    continue  # our lease expired and another replica took it over
                row.lease_owner = None
                row.lease_expires_at = None
                if error == SKIPPED:
                    continue  # not attempted: no attempt counted, due again at once
                row.attempts += 1
                if error is None:
                    row.status = "delivered"
                    row.delivered_at = utcnow()
                    row.last_error = ""
                    report.delivered += 1
                    continue
                row.last_error = error
                unconfigured = sink_name not in self.sinks
                limit = self._settings.max_attempts
                if unconfigured or (limit and row.attempts >= limit):
                    row.status = "dead"
                    report.dead += 1
                    log.error("outbound delivery given up", extra={"sink": sink_name, "error": error})
                else:
                    row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts, self._initial, self._max))
                    report.failed += 1
                report.errors.append(f"{sink_name}: {error}")

    def _ssl_context(self) -> Any:
        if self._ssl is None:
            import httpx

            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def deliver_due(self, now: datetime | None = None, worker_id: str = "local") -> DispatchReport:
        """Send everything due; the scheduler calls this every few seconds.

        Rounds repeat while they make progress, so a backlog of several events
        of one key (each waiting for the one before) drains in one call.
        """
        import httpx

        now = now or utcnow()
        report = DispatchReport()
        with (
            httpx.Client(
                timeout=self._timeout, transport=self._transport, follow_redirects=False, verify=self._ssl_context()
            ) as client,
            ThreadPoolExecutor(max_workers=self._settings.concurrency, thread_name_prefix="keyops-notify") as pool,
        ):
            broken: set[str] = set()  # unreachable this call: left for the next call
            for _ in range(MAX_ROUNDS):
                claimed = self._claim(now, worker_id, broken)
                if not claimed:
                    break
                report.claimed += len(claimed)
                by_sink: dict[str, list[tuple[str, EventData]]] = {}
                for did, sink, ev in claimed:
                    by_sink.setdefault(sink, []).append((did, ev))
                futures = [
                    pool.submit(self._send_chunk, client, sink, items[i : i + CHUNK], broken)
                    for sink, items in by_sink.items()
                    for i in range(0, len(items), CHUNK)
                ]
                results = [result for future in futures for result in future.result()]
                self._record(results, now, worker_id, report)
                if not any(error is None for _, _, error in results):
                    break
        return report

    # -- reading ----------------------------------------------------------

    def list_deliveries(self, *, status: str | None = None, limit: int = 100) -> list[DeliveryRow]:
        from keyops.inventory.models import Key

        stmt: Any = (
            select(OutboxDelivery, OutboxEvent, Key.name)
            .join(OutboxEvent, OutboxEvent.seq == OutboxDelivery.event_seq)
            .outerjoin(Key, Key.id == OutboxEvent.key_id)
            .order_by(OutboxDelivery.event_seq.desc(), OutboxDelivery.sink.desc())
            .limit(limit)
        )
        if status:
            stmt = stmt.where(OutboxDelivery.status == status)
        with self._sessions() as session:
            rows = session.execute(stmt).all()
        return [
            DeliveryRow(
                id=d.id,
                event_id=e.id,
                event_seq=e.seq,
                type=e.type,
                key_id=e.key_id,
                key_name=name or (e.payload or {}).get("key_name"),
                sink=d.sink,
                status=d.status,
                attempts=d.attempts,
                next_attempt_at=d.next_attempt_at,
                last_error=d.last_error,
                delivered_at=d.delivered_at,
                created_at=e.created_at,
            )
            for d, e, name in reversed(rows)
        ]


def build_sinks(settings: NotifySettings) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {
        name: WebhookSink(name=name, url=cfg.url, secret=cfg.secret) for name, cfg in settings.webhooks.items()
    }
    if settings.slack.webhook_url:
        sinks["slack"] = SlackSink(name="slack", url=settings.slack.webhook_url)
    return sinks


def routes_for(settings: NotifySettings) -> list[Route]:
    routes = [Route(name, frozenset(cfg.events)) for name, cfg in sorted(settings.webhooks.items())]
    if settings.slack.webhook_url:
        routes.append(Route("slack", frozenset(settings.slack.events)))
    return routes


def build_dispatcher(
    sessions: sessionmaker[Session], settings: NotifySettings, *, transport: httpx.BaseTransport | None = None
) -> Dispatcher:
    """Wire the outbox routes into the session factory and return the dispatcher."""
    install_routes(sessions, routes_for(settings))
    return Dispatcher(sessions, settings, build_sinks(settings), transport=transport)
