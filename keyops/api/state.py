"""What the request handlers share: the application, the cache, the buckets,
the counters. Built once per process by ``keyops.api.app.create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from keyops.api.auth import allows, caller_for
from keyops.api.cache_sync import CacheSync, Caller
from keyops.api.last_use import LastUse
from keyops.api.metrics import Metrics
from keyops.api.ratelimit import LocalBuckets, ResilientBuckets
from keyops.api.redis_health import RedisHealth
from keyops.bootstrap import App


def json_error(status: int, message: str, **extra: Any) -> Response:
    return Response(orjson.dumps({"error": message, **extra}), status_code=status, media_type="application/json")


_UNAUTHORIZED = orjson.dumps({"error": "missing or invalid bearer token: send Authorization: Bearer <token>"})


@dataclass
class ApiState:
    app: App
    sync: CacheSync
    buckets: LocalBuckets | ResilientBuckets
    metrics: Metrics = field(default_factory=Metrics)
    last_use: LastUse = field(default_factory=LastUse)
    worker_id: str = ""
    scheduler: Any = None
    redis: Any = None
    redis_health: RedisHealth | None = None
    #: ``keyops.stream.intake.StreamIntake`` when [stream] url is set: usage is published, not judged here.
    stream_intake: Any = None
    #: This replica's ``keyops.stream.workers.PartitionWorkers``.
    stream_workers: Any = None
    #: Why the lifespan could not start (one line for ``keyops serve`` to print).
    startup_error: str | None = None
    _memo: dict[str, Caller] = field(default_factory=dict)
    _memo_for: object = None

    def check(self, header: str | None, scope: str) -> tuple[int, bytes] | None:
        """None when the caller may use ``scope``; else (401 or 403, JSON body).
        Known headers are memoised per token table (a gateway sends the same
        one every time), so the hot path skips parsing and hashing."""
        callers = self.sync.callers
        if callers is not self._memo_for:
            self._memo, self._memo_for = {}, callers
        caller = self._memo.get(header) if header is not None else None
        if caller is None:
            caller = caller_for(callers, header)
            if caller is not None and header is not None and len(self._memo) < 4096:
                self._memo[header] = caller
        if caller is None:
            return 401, _UNAUTHORIZED
        if not allows(caller, scope):
            return 403, orjson.dumps({"error": f"token {caller.name!r} lacks the scope {scope!r}"})
        return None

    def authorize(self, request: Request, scope: str) -> Response | None:
        """``check`` for Starlette handlers: None, or the 401/403 response."""
        denied = self.check(request.headers.get("authorization"), scope)
        if denied is None:
            return None
        status, body = denied
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return Response(body, status_code=status, media_type="application/json", headers=headers)
