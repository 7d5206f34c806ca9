"""Operations endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``,
and the trivial ``/v1/ping`` the benchmark compares verify against."""

from __future__ import annotations

import orjson
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from keyops.api import metrics as metrics_mod
from keyops.api.openapi import DOCUMENT
from keyops.api.state import ApiState

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
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["verify_cache"] = "ok" if state.sync.loaded else "loading"
    stores = getattr(state.app, "stores", None)
    if stores is None:
        checks["destinations"] = "ok (no store registry wired; file destinations only)"
    else:
        problem = _store_problem(stores)
        checks["destinations"] = problem or "ok"
    return checks


def _store_problem(stores: object) -> str | None:
    """Ask the store registry whether configured destinations can be used,
    through whichever readiness call it offers."""
    for name in ("check_configured", "readiness", "health"):
        method = getattr(stores, name, None)
        if callable(method):
            try:
                result = method()
            except Exception as exc:
                return f"not ready: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
            if isinstance(result, str) and result and result != "ok":
                return result
            return None
    return None


async def readyz(request: Request) -> Response:
    """Readiness: database reachable, verify cache loaded, destinations configured."""
    state: ApiState = request.app.state.keyops
    checks = await run_in_threadpool(_checks, state)
    ready = all(v.startswith("ok") for v in checks.values())
    return Response(
        orjson.dumps({"ready": ready, "checks": checks}), status_code=200 if ready else 503, media_type=_JSON
    )


async def metrics_endpoint(request: Request) -> Response:
    state: ApiState = request.app.state.keyops
    if not state.app.settings.server.public_metrics:
        denied = state.authorize(request, "admin")
        if denied is not None:
            return denied
    figures = await run_in_threadpool(state.metrics.inventory_figures, state.app.engine)
    body = metrics_mod.render(
        state.metrics, cache_states=state.sync.cache.states(), cache_keys=len(state.sync.cache), figures=figures
    )
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(_request: Request) -> Response:
    return Response(_OPENAPI, media_type=_JSON)
