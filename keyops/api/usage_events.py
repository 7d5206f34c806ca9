"""Splitting usage bodies and aggregating events (pure: no I/O).

A body is a JSON array of events, NDJSON (one event per line) or one JSON
object (one event). Each event is
then checked on its own by ``keyops.detect.events.parse_event`` (the one
parser shared with ``keyops replay``): a bad one is named by index and
skipped, the good ones kept. Aggregation folds events into one row per (key, minute) plus each key's
last use, so the intake writes a handful of rows per request, not one per event.
An event that names its key by hash (``key_hash`` or ``key``) names the
version too, so it also counts as that version's use (usage-aware retirement).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from keyops.detect.events import UsageEvent

MAX_EVENTS = 10_000


def split_body(body: bytes) -> list[Any] | str:
    """The raw events, or an error message for a body that is neither form."""
    text = body.strip()
    if not text:
        return "empty body: send a JSON array of events or NDJSON"
    if text.startswith(b"["):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return f"body is not valid JSON: {exc}"
        if not isinstance(doc, list):
            return "body must be a JSON array of events or NDJSON"
        items: list[Any] = doc
    elif text.startswith(b"{") and isinstance(single := _one_object(text), dict):
        # One object per request (LiteLLM's generic_api ``log_format: single``),
        # possibly pretty-printed over several lines.
        items = [single]
    else:
        items = []
        for number, line in enumerate(text.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                items.append(BadLine(number))
    if len(items) > MAX_EVENTS:
        return f"too many events in one body ({len(items)}, at most {MAX_EVENTS})"
    return items


def _one_object(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


@dataclass(frozen=True)
class BadLine:
    """An NDJSON line that is not JSON (rejected by its index, not the whole body)."""

    line: int


@dataclass
class MinuteRow:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def aggregate(
    events: list[tuple[str, UsageEvent]],
) -> tuple[dict[tuple[str, datetime], MinuteRow], dict[str, datetime]]:
    """Fold (key id, event) pairs into per-minute rows and last-use times."""
    minutes: dict[tuple[str, datetime], MinuteRow] = {}
    last_used: dict[str, datetime] = {}
    for key_id, event in events:
        ts = datetime.fromtimestamp(event.ts, UTC)
        row = minutes.setdefault((key_id, ts.replace(second=0, microsecond=0)), MinuteRow())
        row.requests += 1
        if event.status >= 400:
            row.errors += 1
        row.input_tokens += event.input_tokens
        row.output_tokens += event.output_tokens
        if key_id not in last_used or last_used[key_id] < ts:
            last_used[key_id] = ts
    return minutes, last_used


def version_last_used(events: list[tuple[str, UsageEvent]]) -> dict[str, datetime]:
    """Each named version's last use: version hash (hex) -> latest event time.
    Events that give only a ``key_id`` say nothing about the version."""
    last_used: dict[str, datetime] = {}
    for _key_id, event in events:
        kind, _, value = event.key_ref.partition(":")
        if kind != "hash":
            continue
        ts = datetime.fromtimestamp(event.ts, UTC)
        if value not in last_used or last_used[value] < ts:
            last_used[value] = ts
    return last_used
