"""Sinks: how one outbox event becomes one HTTP request.

Webhook sinks get Standard Webhooks: ``webhook-id`` is the event's id (the
same on every retry, so receivers can deduplicate), ``webhook-timestamp`` the
send time, ``webhook-signature`` ``v1,<base64 HMAC-SHA256>`` over
``id.timestamp.body`` with the sink's secret. The body is
``{"type", "timestamp", "data"}`` with the event's payload as ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from keyops import __version__
from keyops.alerts.standard import sign
from keyops.notify import slack


@dataclass(frozen=True)
class EventData:
    """What a sink needs of an outbox event (detached from the session)."""

    seq: int
    id: str
    type: str
    key_id: str | None
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class OutboundRequest:
    url: str
    body: bytes
    headers: dict[str, str]


class Sink(Protocol):
    @property
    def name(self) -> str: ...

    def request(self, event: EventData, now: datetime) -> OutboundRequest: ...


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event: EventData) -> bytes:
    return orjson.dumps({"type": event.type, "timestamp": _iso(event.created_at), "data": event.payload})


@dataclass(frozen=True)
class WebhookSink:
    name: str
    url: str
    secret: str

    def request(self, event: EventData, now: datetime) -> OutboundRequest:
        body = event_body(event)
        stamp = str(int(now.timestamp()))
        return OutboundRequest(
            url=self.url,
            body=body,
            headers={
                "content-type": "application/json",
                "user-agent": f"keyops/{__version__}",
                "webhook-id": event.id,
                "webhook-timestamp": stamp,
                "webhook-signature": sign(self.secret, event.id, stamp, body),
            },
        )


@dataclass(frozen=True)
class SlackSink:
    name: str
    url: str

    def request(self, event: EventData, now: datetime) -> OutboundRequest:
        body = orjson.dumps({"text": slack.render(event.type, event.payload)})
        return OutboundRequest(
            url=self.url,
            body=body,
            headers={"content-type": "application/json", "user-agent": f"keyops/{__version__}"},
        )
