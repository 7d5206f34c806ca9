"""``POST /v1/keys/verify``: the enforcement point, answered from memory.

Body ``{"key": "...", "cost": 1}``. A well-formed request always gets 200 with
``{"valid", "code", "key_id", "name", "owner", "profile", "version",
"version_state", "grace_ends_at", "ratelimit": {"limit", "remaining",
"reset"}}``. ``MALFORMED`` is decided by the checksum alone: no lookup, no
database. Only a body that is not a JSON object with a string ``key`` gets
400. Deliberately no validation framework: this runs for every request an
API gateway sees.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from keyops.api.cache import Hit
from keyops.api.ratelimit import Decision
from keyops.api.state import ApiState, json_error
from keyops.domain.keyformat import is_well_formed

MAX_VERIFY_BODY = 4096
MAX_COST = 1_000_000
_NO_LIMIT = {"limit": None, "remaining": None, "reset": None}
_JSON = "application/json"


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


async def verify_endpoint(request: Request) -> Response:
    state: ApiState = request.app.state.keyops
    denied = state.authorize(request, "verify")
    if denied is not None:
        return denied
    parsed = _parse(await request.body())
    if isinstance(parsed, str):
        return json_error(400, parsed)
    key, cost = parsed
    if not is_well_formed(key):
        code, hit = "MALFORMED", None
    else:
        hit = state.sync.cache.lookup(hashlib.sha256(key.encode("utf-8")).digest())
        code = decide(hit, time.time())
    limit_doc = None
    if code == "VALID" and hit is not None:
        limit = state.sync.limits.get(hit.profile)
        if limit is not None:
            decision: Decision = await state.buckets.take(hit.key_id, limit, cost)
            limit_doc = {"limit": decision.limit, "remaining": decision.remaining, "reset": decision.reset}
            if not decision.allowed:
                code = "RATE_LIMITED"
    state.metrics.verify[code] = state.metrics.verify.get(code, 0) + 1
    return Response(_answer(code, hit, limit_doc), media_type=_JSON)
