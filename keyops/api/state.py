"""What the request handlers share: the application, the cache, the buckets,
the counters. Built once per process by ``keyops.api.app.create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from keyops.api.auth import allows, caller_for
from keyops.api.cache_sync import CacheSync
from keyops.api.metrics import Metrics
from keyops.api.ratelimit import LocalBuckets, RedisBuckets
from keyops.bootstrap import App


def json_error(status: int, message: str, **extra: Any) -> Response:
    return Response(orjson.dumps({"error": message, **extra}), status_code=status, media_type="application/json")


_UNAUTHORIZED = orjson.dumps({"error": "missing or invalid bearer token: send Authorization: Bearer <token>"})


@dataclass
class ApiState:
    app: App
    sync: CacheSync
    buckets: LocalBuckets | RedisBuckets
    metrics: Metrics = field(default_factory=Metrics)
    worker_id: str = ""
    scheduler: Any = None
    redis: Any = None

    def authorize(self, request: Request, scope: str) -> Response | None:
        """None when the caller may use ``scope``; else the 401/403 answer."""
        caller = caller_for(self.sync.callers, request.headers.get("authorization"))
        if caller is None:
            return Response(
                _UNAUTHORIZED, status_code=401, media_type="application/json", headers={"WWW-Authenticate": "Bearer"}
            )
        if not allows(caller, scope):
            return json_error(403, f"token {caller.name!r} lacks the scope {scope!r}")
        return None
