"""How a batch of accepted usage is written on the stream (pure: no I/O).

One message holds one request's events for one partition, each with its key
already resolved (``key_ref`` is ``id:<uuid>``: a plaintext key never reaches
the stream, and the worker needs no hash lookup), plus the intake's clock,
which the worker hands to the engine exactly as the single-node intake does.
Events are written field by field (``UsageEvent`` is a named tuple), so the
worker rebuilds the very event the intake parsed, prompt sketch and evidence
prefix included.
"""

from __future__ import annotations

from typing import Any

import orjson

from keyops.detect.events import UsageEvent

VERSION = 1


def encode(events: list[UsageEvent], now: float | None) -> bytes:
    return orjson.dumps({"v": VERSION, "now": now, "events": [list(e) for e in events]})


def decode(data: bytes) -> tuple[list[UsageEvent], float | None] | str:
    """The events and the intake's clock (None: event time alone decides, as
    in a replay), or why the message cannot be read."""
    try:
        doc: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(doc, dict) or doc.get("v") != VERSION or not isinstance(doc.get("events"), list):
        return f"not a usage batch of version {VERSION}"
    try:
        events = [_event(row) for row in doc["events"]]
        now = None if doc["now"] is None else float(doc["now"])
    except (TypeError, ValueError, KeyError):
        return "a usage batch with a malformed event"
    return events, now


def _event(row: Any) -> UsageEvent:
    if not isinstance(row, list) or len(row) != len(UsageEvent._fields):
        raise ValueError("bad event")
    ts, key_ref, ip, network, endpoint, status, duration_ms, itok, otok, sketch, ua, prefix = row
    return UsageEvent(
        float(ts),
        str(key_ref),
        str(ip),
        str(network),
        str(endpoint),
        int(status),
        int(duration_ms),
        int(itok),
        int(otok),
        tuple(int(x) for x in sketch),
        str(ua),
        str(prefix),
    )
