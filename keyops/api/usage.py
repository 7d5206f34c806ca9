"""``POST /v1/usage``: usage events from gateways.

Answers 202 ``{"accepted": n, "rejected": [{"index", "reason", "error"}],
"detection": {"accepted": m, "rejected": [{"index", "reason", "error"}]}}``:
the top level says which events were kept (usage aggregates, last use) and
which were not (unparseable, unknown key); ``detection`` says which of the
kept ones the detection engine took to judge and which it refused (late,
buffer full) or ``null`` when no engine is wired. Each ``reason`` is a code
from ``keyops.detect.refusals.REASONS``; indexes are those of the body. Keys are
first brought to keyops' own shape when they come in another one
(LiteLLM's standard logging payload, OpenTelemetry GenAI names:
``keyops.api.usage_formats``), then parsed by ``keyops.detect.events.parse_event`` (shared with ``keyops
replay``; a plaintext ``key`` is hashed there and dropped) and resolved from
memory (hashes, through the verify cache) or the inventory (``key_id``);
one transaction per request upserts the per-minute aggregates and moves
``keys.last_used_at`` forward, and ``key_versions.last_used_at`` for events
that name the key by hash (they name the version). The writes go through a
plain connection, not the ORM session, so they do not count as key changes
(usage must not invalidate verify caches). Accepted events are then handed
to the detection engine (``app.detection.ingest``) when it is wired.

With ``[stream] url`` set, accepted events are instead published to the
usage stream (partitioned by key, ``keyops.stream.intake``) *before* the
aggregates are written, and the answer waits for the stream's
acknowledgement; ``detection.accepted`` then counts the events published
(a partition worker, on whichever replica holds the key's partition, judges
them). While the stream is unreachable the answer is 503 with
``Retry-After`` and nothing of the body is kept.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import anyio.from_thread
import orjson
from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from keyops.api import usage_formats
from keyops.api.cache import VerifyCache
from keyops.api.last_use import forward, move_forward
from keyops.api.state import ApiState, json_error
from keyops.api.usage_events import BadLine, aggregate, split_body, version_last_used
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.refusals import ENGINE_ERROR, INVALID, UNKNOWN_KEY
from keyops.inventory import models
from keyops.stream.base import StreamUnavailable

log = logging.getLogger("keyops.api.usage")
#: Seconds a gateway is asked to wait when the usage stream is unreachable.
RETRY_AFTER = 2


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (without reading it all) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _resolve(cache: VerifyCache, key_ref: str) -> str | None:
    """The key id for ``hash:...`` from memory; ``id:...`` is checked later in the inventory."""
    kind, _, value = key_ref.partition(":")
    if kind == "id":
        return value
    hit = cache.lookup(bytes.fromhex(value))
    return None if hit is None else hit.key_id


def _ids_by_hash(engine: Engine, hashes: set[str]) -> dict[str, str]:
    """Cache misses (a key issued a moment ago) looked up in the inventory."""
    found: dict[str, str] = {}
    hash_list = sorted(hashes)
    v = models.KeyVersion
    with engine.connect() as conn:
        for i in range(0, len(hash_list), 500):
            rows = conn.execute(select(v.secret_hash, v.key_id).where(v.secret_hash.in_(hash_list[i : i + 500])))
            found.update({h: k for h, k in rows if h})
    return found


def _ids_by_name(engine: Engine, names: set[str]) -> dict[str, str]:
    """Key ids by key name (LiteLLM payloads that give only ``user_api_key_alias``)."""
    found: dict[str, str] = {}
    name_list = sorted(names)
    with engine.connect() as conn:
        for i in range(0, len(name_list), 500):
            rows = conn.execute(
                select(models.Key.name, models.Key.id).where(models.Key.name.in_(name_list[i : i + 500]))
            )
            found.update({n: k for n, k in rows})
    return found


def _known_ids(engine: Engine, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    found: set[str] = set()
    id_list = sorted(ids)
    with engine.connect() as conn:
        for i in range(0, len(id_list), 500):
            found.update(conn.execute(select(models.Key.id).where(models.Key.id.in_(id_list[i : i + 500]))).scalars())
    return found


def write_usage(engine: Engine, events: list[tuple[str, UsageEvent]]) -> None:
    """One transaction: per-minute upserts and last-use times (keys, and versions named by hash)."""
    minutes, last_used = aggregate(events)
    if not minutes:
        return
    table = cast(Table, models.UsageMinute.__table__)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table)
    upsert = stmt.on_conflict_do_update(
        index_elements=["key_id", "minute"],
        set_={
            "requests": table.c.requests + stmt.excluded.requests,
            "errors": table.c.errors + stmt.excluded.errors,
            "input_tokens": table.c.input_tokens + stmt.excluded.input_tokens,
            "output_tokens": table.c.output_tokens + stmt.excluded.output_tokens,
        },
    )
    # One executemany per statement (sorted, so concurrent batches lock rows
    # in the same order) instead of a round trip per minute and per key.
    keys = cast(Table, models.Key.__table__)
    with engine.begin() as conn:
        conn.execute(
            upsert,
            [
                {
                    "key_id": key_id,
                    "minute": minute,
                    "requests": row.requests,
                    "errors": row.errors,
                    "input_tokens": row.input_tokens,
                    "output_tokens": row.output_tokens,
                }
                for (key_id, minute), row in sorted(minutes.items())
            ],
        )
        forward(conn, keys.c.id, last_used)
        move_forward(conn, version_last_used(events))


def ingest(state: ApiState, body: bytes, now: float) -> dict[str, Any] | str:
    """The answer's document for one body, or a one-line reason to refuse it whole."""
    items = split_body(body)
    if isinstance(items, str):
        return items
    rejected: list[dict[str, Any]] = []
    parsed: list[tuple[int, UsageEvent, str | None]] = []
    by_id: set[str] = set()
    misses: set[str] = set()
    cache = state.sync.cache
    # The [detection] limits on one event (prompt size, how far ahead), the
    # same ones `keyops replay` applies.
    detection = getattr(state.app, "detection", None)
    parse = detection.parse if detection is not None else parse_event
    docs = [raw if isinstance(raw, BadLine) else usage_formats.native(raw) for raw in items]
    named = usage_formats.aliases(docs)
    ids_by_name = _ids_by_name(state.app.engine, named) if named else {}
    for index, doc in enumerate(docs):
        if isinstance(doc, dict) and "key_alias" in doc:
            doc = usage_formats.with_key_id(doc, ids_by_name)
            if isinstance(doc, str):
                rejected.append({"index": index, "reason": UNKNOWN_KEY, "error": doc})
                continue
        if isinstance(doc, BadLine):
            event: UsageEvent | str = f"line {doc.line} is not valid JSON"
        elif isinstance(doc, str):
            event = doc
        else:
            event = parse(doc, now=now)
        if isinstance(event, str):
            if len(items) == 1 and body.lstrip().startswith(b"{"):
                # One object posted on its own (LiteLLM's ``single`` format):
                # a malformed one is a malformed request.
                return event
            rejected.append({"index": index, "reason": INVALID, "error": event})
            continue
        key_id = _resolve(cache, event.key_ref)
        if event.key_ref.startswith("id:"):
            by_id.add(event.key_ref[3:])
        elif key_id is None:
            misses.add(event.key_ref[5:])
        parsed.append((index, event, key_id))
    late = _ids_by_hash(state.app.engine, misses) if misses else {}
    resolved: list[tuple[int, str, UsageEvent]] = []
    for index, event, maybe_id in parsed:
        key_id = maybe_id or late.get(event.key_ref[5:])
        if key_id is None:
            rejected.append(
                {"index": index, "reason": UNKNOWN_KEY, "error": "unknown key: no key in the inventory has this hash"}
            )
        else:
            resolved.append((index, key_id, event))
    known = _known_ids(state.app.engine, by_id)
    good: list[tuple[str, UsageEvent]] = []
    good_index: list[int] = []
    for index, key_id, event in resolved:
        if event.key_ref.startswith("id:") and key_id not in known:
            rejected.append(
                {"index": index, "reason": UNKNOWN_KEY, "error": "unknown key: no key in the inventory has this id"}
            )
        else:
            good.append((key_id, event))
            good_index.append(index)
    rejected.sort(key=lambda r: int(r["index"]))
    intake = state.stream_intake
    if intake is not None:
        # Past one node: published (and acknowledged) before anything is
        # written, so a 503 leaves nothing behind and the retry counts once.
        published = anyio.from_thread.run(intake.publish, good, now, body)
        write_usage(state.app.engine, good)
        return {"accepted": len(good), "rejected": rejected, "detection": {"accepted": published, "rejected": []}}
    write_usage(state.app.engine, good)
    return {"accepted": len(good), "rejected": rejected, "detection": _judge(detection, good, good_index, now)}


def _judge(
    detection: Any, good: list[tuple[str, UsageEvent]], good_index: list[int], now: float
) -> dict[str, Any] | None:
    """Hand the kept events to the detection engine, with the intake's clock
    (so one event stamped ahead cannot move its watermark past honest ones):
    the answer's ``detection`` part, by the body's indexes."""
    if detection is None:
        return None
    refused: list[dict[str, Any]] = []
    if good:
        try:
            result = detection.ingest([event for _, event in good], now=now)
        except Exception:
            log.warning("usage: the detection engine failed on a batch (aggregates were kept)", exc_info=True)
            error = "the detection engine failed on this batch (logged); the usage was kept"
            refused = [{"index": i, "reason": ENGINE_ERROR, "error": error} for i in good_index]
        else:
            refused = [{"index": good_index[r.index], "reason": r.reason, "error": r.error} for r in result.rejected]
    return {"accepted": len(good) - len(refused), "rejected": refused}


def _stream_down() -> Response:
    """Nothing of the body was kept: the gateway should send it again."""
    response = json_error(
        503, "the usage stream (NATS, stream.url) is unreachable; nothing was accepted, retry after the delay"
    )
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


async def usage_endpoint(request: Request) -> Response:
    state: ApiState = request.app.state.keyops
    denied = state.authorize(request, "usage")
    if denied is not None:
        return denied
    limit = state.app.settings.server.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return json_error(413, f"body too large: at most {limit} bytes (server.max_body_bytes); split the batch")
    if state.stream_intake is not None and not state.stream_intake.ready:
        return _stream_down()
    try:
        doc = await run_in_threadpool(ingest, state, body, time.time())
    except StreamUnavailable:
        return _stream_down()
    if isinstance(doc, str):
        return json_error(400, doc)
    state.metrics.count_usage(doc)
    return Response(orjson.dumps(doc), status_code=202, media_type="application/json")
