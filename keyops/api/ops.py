"""Operations endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``,
and the trivial ``/v1/ping`` the benchmark compares verify against."""

from __future__ import annotations

import orjson
from sqlalchemy import select, text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from keyops.api import metrics as metrics_mod
from keyops.api.openapi import DOCUMENT
from keyops.api.state import ApiState
from keyops.inventory import models

_JSON = "application/json"
_OPENAPI = orjson.dumps(DOCUMENT)
_PONG = b'{"ok":true}'


async def healthz(_request: Request) -> Response:
    """Liveness: the process answers. Says nothing about its dependencies."""
    return Response(b'{"status":"ok"}', media_type=_JSON)


async def ping(_request: Request) -> Response:
    return Response(_PONG, media_type=_JSON)


def _checks(state: ApiState) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with state.app.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            kinds = sorted(str(k) for k in conn.execute(select(models.Destination.kind).distinct()).scalars())
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        kinds = []
    checks["verify_cache"] = "ok" if state.sync.loaded else "loading"
    checks["destinations"] = _destinations_problem(state, kinds) or "ok"
    if state.stream_intake is not None:
        # Usage cannot be taken without the stream: this replica is not ready.
        checks["stream"] = "ok" if state.stream_intake.ready else "unreachable: NATS (stream.url)"
    return checks


def _destinations_problem(state: ApiState, kinds: list[str]) -> str | None:
    """Every destination kind the inventory uses must have a configured store
    (building one validates its settings: a Vault address and credentials,
    an AWS region, the file store's key)."""
    stores = getattr(state.app, "stores", None)
    if stores is None:
        return None
    for kind in kinds:
        try:
            stores.for_scheme(kind)
        except Exception as exc:
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return f"{kind}: not configured: {detail}"
    return None


async def _redis_checks(state: ApiState) -> dict[str, str]:
    """``redis`` (a PING within ``redis.timeout_ms``, or "down" while the
    breaker is open) and ``redis_fanout`` (the pub/sub subscription)."""
    health = state.redis_health
    if health is None:
        return {"redis": "not configured"}
    answered = await health.ping(state.redis)
    return {"redis": "ok" if answered else "down", "redis_fanout": "ok" if health.fanout_up else "down"}


async def readyz(request: Request) -> Response:
    """Readiness: database reachable, verify cache loaded, destinations
    configured, and the usage stream connected when one is configured.

    Redis is reported but does not decide readiness: without it verify still
    answers (per-process rate-limit buckets), so a Redis outage makes every
    replica ``degraded`` rather than taking them all out of the load balancer.
    """
    state: ApiState = request.app.state.keyops
    checks = await run_in_threadpool(_checks, state)
    ready = all(v.startswith("ok") for v in checks.values())
    redis = await _redis_checks(state)
    degraded = any(v == "down" for v in redis.values())
    body = {"ready": ready, "degraded": degraded, "checks": {**checks, **redis}}
    return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type=_JSON)


def _private(request: Request) -> Response | None:
    """``server.public_metrics = false`` keeps /metrics and /openapi.json for
    admin tokens: both tell a stranger what this deployment runs and exposes."""
    state: ApiState = request.app.state.keyops
    if state.app.settings.server.public_metrics:
        return None
    return state.authorize(request, "admin")


async def metrics_endpoint(request: Request) -> Response:
    state: ApiState = request.app.state.keyops
    denied = _private(request)
    if denied is not None:
        return denied
    figures = await run_in_threadpool(state.metrics.inventory_figures, state.app.engine)
    if state.redis_health is not None:
        await state.redis_health.ping(state.redis)  # so keyops_redis_up is current even without traffic
    body = metrics_mod.render(
        state.metrics,
        cache_states=state.sync.cache.states(),
        cache_keys=len(state.sync.cache),
        figures=figures,
        redis=state.redis_health,
    )
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> Response:
    denied = _private(request)
    if denied is not None:
        return denied
    return Response(_OPENAPI, media_type=_JSON)
