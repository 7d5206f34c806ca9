"""``POST /v1/keys/verify``: the enforcement point, answered from memory.

Body ``{"key": "...", "cost": 1}``. A well-formed request always gets 200 with
``{"valid", "code", "key_id", "name", "owner", "profile", "version",
"version_state", "grace_ends_at", "ratelimit": {"limit", "remaining",
"reset"}}``. ``MALFORMED`` is decided by the checksum alone: no lookup, no
database. Only a body that is not a JSON object with a string ``key`` gets
400. Deliberately no validation framework: this runs for every request an
API gateway sees. The one thing it records is a genuine key's use (VALID or
RATE_LIMITED), in memory, per version (``keyops.api.last_use``); the daemon
writes those in batches for usage-aware retirement.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from keyops.api.cache import Hit
from keyops.api.cache_sync import Limit
from keyops.api.ratelimit import Decision, LocalBuckets
from keyops.api.state import ApiState
from keyops.domain import keyformat

MAX_VERIFY_BODY = 4096
MAX_COST = 1_000_000
_NO_LIMIT = {"limit": None, "remaining": None, "reset": None, "requests_per_minute": None}
_JSON = "application/json"
log = logging.getLogger("keyops.api.verify")


def _iso(ts: float) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def decide(hit: Hit | None, now: float) -> str:
    """The code for a lookup result, before rate limiting."""
    if hit is None:
        return "NOT_FOUND"
    if hit.key_state == "revoked" or hit.version_state == "revoked":
        return "REVOKED"
    if hit.key_state == "expired" or (hit.expires_at and hit.expires_at <= now):
        return "EXPIRED"
    if hit.key_state == "suspended":
        return "SUSPENDED"
    if hit.version_state == "retired":
        return "EXPIRED"
    if hit.version_state == "previous" and hit.grace_ends_at and hit.grace_ends_at <= now:
        return "EXPIRED"
    return "VALID"


def _answer(code: str, hit: Hit | None, limit: dict[str, Any] | None = None) -> bytes:
    if hit is None:
        doc: dict[str, Any] = {
            "valid": False,
            "code": code,
            "key_id": None,
            "name": None,
            "owner": None,
            "profile": None,
            "version": None,
            "version_state": None,
            "grace_ends_at": None,
            "ratelimit": _NO_LIMIT,
        }
    else:
        doc = {
            "valid": code == "VALID",
            "code": code,
            "key_id": hit.key_id,
            "name": hit.name,
            "owner": hit.owner,
            "profile": hit.profile,
            "version": hit.version,
            "version_state": hit.version_state,
            "grace_ends_at": _iso(hit.grace_ends_at) if hit.version_state == "previous" else None,
            "ratelimit": limit or _NO_LIMIT,
        }
    return orjson.dumps(doc)


def _parse(body: bytes) -> tuple[str, int] | str:
    """(key, cost) or an error message."""
    if len(body) > MAX_VERIFY_BODY:
        return f"body too large (at most {MAX_VERIFY_BODY} bytes)"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 'body is not valid JSON: send {"key": "..."}'
    if not isinstance(doc, dict):
        return 'body must be a JSON object: {"key": "..."}'
    key = doc.get("key")
    if not isinstance(key, str):
        return 'field "key" is required and must be a string'
    cost = doc.get("cost", 1)
    if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= MAX_COST:
        return f'field "cost" must be an integer from 1 to {MAX_COST}'
    return key, cost


_WELL_FORMED = re.compile(r"([a-z][a-z0-9]*(?:_[a-z0-9]+)*)_([0-9A-Za-z]{33})_([0-9A-Za-z]{6})")
_MAX_KEY = keyformat.MAX_PREFIX_LENGTH + keyformat.RANDOM_CHARS + keyformat.CHECKSUM_CHARS + 2


def well_formed(key: str) -> bool:
    """``keyformat.is_well_formed`` with one compiled regex instead of
    per-character loops (same answers; a unit test holds them equal)."""
    if len(key) > _MAX_KEY:
        return False
    match = _WELL_FORMED.fullmatch(key)
    return match is not None and keyformat.checksum(key[: match.end(2)]) == match.group(3)


Judgement = tuple[str, Hit | None, Decision | None]
"""(code, the cached key or None, the rate-limit decision or None)."""


def judge(state: ApiState, key: str, cost: int) -> Judgement | Awaitable[Judgement]:
    """The decision for one presented key, counted: the per-code counter, the
    version's last use and the key's bucket. Verify and forward-auth both go
    through here, so a key's uses and limits are the same whichever a gateway
    calls. Returns without awaiting when no shared (Redis) bucket is involved
    (no Redis, or Redis skipped while down)."""
    if not well_formed(key):
        code, hit = "MALFORMED", None
    else:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        hit = state.sync.cache.lookup(digest)
        now = time.time()
        code = decide(hit, now)
        if code == "VALID":
            # A genuine key (even if the rate limit then refuses it): this
            # version was used. One dict store; the daemon flushes it.
            state.last_use.seen[digest] = now
    if code == "VALID" and hit is not None:
        limit = state.sync.limits.get(hit.profile)
        if limit is not None:
            buckets = state.buckets
            if isinstance(buckets, LocalBuckets):
                return _limited(state, hit, buckets.take_now(hit.key_id, limit, cost, time.monotonic()))
            pending = buckets.take(hit.key_id, limit, cost)
            if isinstance(pending, Decision):
                return _limited(state, hit, pending)
            return _shared(state, hit, pending)
    state.metrics.verify[code] = state.metrics.verify.get(code, 0) + 1
    return code, hit, None


def _limited(state: ApiState, hit: Hit, decision: Decision) -> Judgement:
    code = "VALID" if decision.allowed else "RATE_LIMITED"
    state.metrics.verify[code] = state.metrics.verify.get(code, 0) + 1
    return code, hit, decision


async def _shared(state: ApiState, hit: Hit, pending: Awaitable[Decision]) -> Judgement:
    return _limited(state, hit, await pending)


def _render(judged: Judgement, limits: Mapping[str, Limit]) -> tuple[int, bytes]:
    code, hit, decision = judged
    if decision is None or hit is None:
        return 200, _answer(code, hit, None)
    rule = limits.get(hit.profile)
    limit = {
        "limit": decision.limit,
        "remaining": decision.remaining,
        "reset": decision.reset,
        # The profile's sustained rate, for gateways that enforce their own
        # per-minute limit too (LiteLLM's rpm_limit).
        "requests_per_minute": rule.requests_per_minute if rule is not None else None,
    }
    return 200, _answer(code, hit, limit)


async def _render_later(pending: Awaitable[Judgement], limits: Mapping[str, Limit]) -> tuple[int, bytes]:
    return _render(await pending, limits)


def verdict(state: ApiState, body: bytes) -> tuple[int, bytes] | Awaitable[tuple[int, bytes]]:
    """(status, JSON body) for one request body, without awaiting when no
    shared (Redis) bucket is involved."""
    parsed = _parse(body)
    if isinstance(parsed, str):
        return 400, orjson.dumps({"error": parsed})
    judged = judge(state, *parsed)
    if isinstance(judged, tuple):
        return _render(judged, state.sync.limits)
    return _render_later(judged, state.sync.limits)


async def verify_endpoint(request: Request) -> Response:
    """The routed (Starlette) form; ``VerifyFastPath`` serves POSTs in production."""
    state: ApiState = request.app.state.keyops
    denied = state.authorize(request, "verify")
    if denied is not None:
        return denied
    result = verdict(state, await request.body())
    status, body = result if isinstance(result, tuple) else await result
    return Response(body, status_code=status, media_type=_JSON)


class VerifyFastPath:
    """``POST /v1/keys/verify`` as a bare ASGI callable: no Request object,
    no middleware, the body read straight off ``receive``. Every other route
    (and every other method on this path) goes through Starlette."""

    def __init__(self, state: ApiState) -> None:
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = self.state
        auth: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
                break
        denied = state.check(auth, "verify")
        if denied is not None:
            status, body = denied
        else:
            chunks = []
            size = 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= MAX_VERIFY_BODY:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            if size > MAX_VERIFY_BODY:
                status, body = 400, orjson.dumps({"error": f"body too large (at most {MAX_VERIFY_BODY} bytes)"})
            else:
                try:
                    result = verdict(state, b"".join(chunks))
                    status, body = result if isinstance(result, tuple) else await result
                except Exception:
                    log.exception("verify failed")
                    status, body = 500, b'{"error":"internal error (logged); retry"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
