"""The ASGI application (Starlette: routing and nothing else on the hot path).

``create_app(app)`` returns the Starlette app for one process. Its lifespan
loads the verify cache, starts the change follower, the flusher of verify's
per-version last use and (unless disabled) the scheduler, and on shutdown
writes the last uses once more and stops the rest within
``server.shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyops.api import admin, ops
from keyops.api.alerts import alerts_endpoint
from keyops.api.authz import PREFIX as AUTHZ_PREFIX
from keyops.api.authz import AuthzFastPath
from keyops.api.body_timeout import BODY_TIMEOUT_MESSAGE, BodyDeadlines, BodyTimeoutError, send_timeout_response
from keyops.api.cache_sync import CacheSync
from keyops.api.last_use import Flusher
from keyops.api.ratelimit import LocalBuckets, RedisBuckets, ResilientBuckets
from keyops.api.redis_fanout import RedisFanout, start_fanout
from keyops.api.redis_health import RedisHealth, client_options
from keyops.api.state import ApiState, json_error
from keyops.api.usage import usage_endpoint
from keyops.api.verify import VerifyFastPath, verify_endpoint
from keyops.bootstrap import App
from keyops.domain.durations import parse_duration
from keyops.inventory import changes

log = logging.getLogger("keyops.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ROUTES = {
    "/v1/keys/verify": "/v1/keys/verify",
    "/v1/usage": "/v1/usage",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/metrics": "/metrics",
    "/openapi.json": "/openapi.json",
    "/v1/ping": "/v1/ping",
    "/v1/authz": "/v1/authz",
}


class CountRequests:
    """The outermost layer: counts requests by route template and status for
    ``keyops_http_requests_total`` (a few dict operations per request),
    hands ``POST /v1/keys/verify`` and everything under ``/v1/authz`` to
    their bare-ASGI fast paths, and puts the
    ``server.body_timeout`` deadline on reading every request's body."""

    def __init__(self, inner: ASGIApp, state: ApiState, body_timeout: float = 0.0) -> None:
        self.inner = inner
        self.counts = state.metrics.http
        self.verify = VerifyFastPath(state)
        settings = state.app.settings
        self.authz = AuthzFastPath(state, settings.authz, settings.server.trusted_proxies)
        self.deadlines = BodyDeadlines(body_timeout) if body_timeout > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path: str = scope["path"]
        route = _ROUTES.get(path) or _prefixed(path)
        status = 500
        started = False

        async def counting_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
            await send(message)

        if self.deadlines is not None:
            receive = self.deadlines.wrap(receive)
        try:
            if route == "/v1/keys/verify" and scope["method"] == "POST":
                await self.verify(scope, receive, counting_send)
            elif route == "/v1/authz":
                await self.authz(scope, receive, counting_send)
            else:
                await self.inner(scope, receive, counting_send)
        except BodyTimeoutError:
            # The fast path has no exception handlers: answer here.
            if not started:
                await send_timeout_response(counting_send)
        finally:
            key = (route, status)
            self.counts[key] = self.counts.get(key, 0) + 1


def _prefixed(path: str) -> str:
    """The route template of a path that is not one of the fixed routes."""
    if path.startswith("/v1/alerts/"):
        return "/v1/alerts/{source}"
    if path.startswith(AUTHZ_PREFIX + "/"):
        return "/v1/authz"
    if path.startswith("/v1/admin/"):
        return "/v1/admin/*"
    return "other"


async def _not_found(request: Request, _exc: Exception) -> Response:
    return json_error(404, f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)")


async def _method_not_allowed(request: Request, _exc: Exception) -> Response:
    return json_error(405, f"{request.method} is not allowed on {request.url.path} (see /openapi.json)")


async def _body_timeout(_request: Request, _exc: Exception) -> Response:
    return Response(
        BODY_TIMEOUT_MESSAGE, status_code=408, headers={"connection": "close"}, media_type="application/json"
    )


async def _server_error(_request: Request, _exc: Exception) -> Response:
    log.exception("request failed")
    return json_error(500, "internal error (logged); retry, and report it if it persists")


def make_state(app: App, *, worker_id: str) -> ApiState:
    server = app.settings.server
    sync = CacheSync(
        app.engine if app.engine.dialect.name != "sqlite" else _sqlite_reader(app),
        poll_interval=server.change_poll_ms / 1000.0,
        refresh_every=float(parse_duration(server.cache_refresh)),
    )
    buckets: LocalBuckets | ResilientBuckets = LocalBuckets()
    redis_client = None
    health = None
    settings = app.settings.redis
    if settings.url:
        import redis.asyncio as aioredis

        redis_client = aioredis.from_url(settings.url, **client_options(settings, asynchronous=True))
        health = RedisHealth.from_settings(settings)
        buckets = ResilientBuckets(RedisBuckets(redis_client, settings.key_prefix), LocalBuckets(), health)
    return ApiState(app=app, sync=sync, buckets=buckets, worker_id=worker_id, redis=redis_client, redis_health=health)


def _sqlite_reader(app: App) -> Any:
    """A second SQLite engine for the cache's reads: the inventory engine
    starts every transaction with BEGIN IMMEDIATE (right for writers), which
    would make a million-row load hold the write lock; under WAL plain reads
    block nobody."""
    from sqlalchemy import create_engine

    return create_engine(app.engine.url, connect_args={"check_same_thread": False, "timeout": 30})


def create_app(app: App, *, worker_id: str = "", scheduler_factory: Callable[[ApiState], Any] | None = None) -> Any:
    state = make_state(app, worker_id=worker_id)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await _start_stream(state)
        await run_in_threadpool(state.sync.load)
        state.sync.start()
        fanout = await _start_redis(state)
        flusher = Flusher(state.last_use, app.engine, float(parse_duration(app.settings.server.last_use_flush)))
        flushing = asyncio.create_task(flusher.run())
        if scheduler_factory is not None:
            state.scheduler = scheduler_factory(state)
            state.scheduler.start()
        try:
            yield
        finally:
            # Requests are drained by now: write the last uses first, before
            # anything slower can run into the shutdown bound.
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            await flusher.flush()
            if state.scheduler is not None:
                await run_in_threadpool(state.scheduler.stop)
            await _stop_stream(state)
            state.sync.stop()
            if fanout is not None:
                changes.set_redis_publisher(None)
                await run_in_threadpool(fanout.close)
            if state.redis is not None:
                await state.redis.aclose()

    routes = [
        Route("/v1/keys/verify", verify_endpoint, methods=["POST"]),
        Route("/v1/usage", usage_endpoint, methods=["POST"]),
        Route("/v1/alerts/{source}", alerts_endpoint, methods=["POST"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", ops.openapi, methods=["GET"]),
        Route("/v1/ping", ops.ping, methods=["GET"]),
        *admin.routes(),
    ]
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            404: _not_found,
            405: _method_not_allowed,
            500: _server_error,
            BodyTimeoutError: _body_timeout,
        },
    )
    starlette.state.keyops = state
    return CountRequests(starlette, state, body_timeout=float(parse_duration(app.settings.server.body_timeout)))


async def _start_stream(state: ApiState) -> None:
    """Connect to the usage stream and start this replica's partition workers.
    An unreachable stream at start stops the process (one line naming
    ``stream.url``); lost later, usage answers 503 until it is back."""
    stream = getattr(state.app, "stream", None)
    if stream is None:
        return
    from keyops.stream.base import StreamUnavailable
    from keyops.stream.factory import build_workers
    from keyops.stream.intake import StreamIntake

    try:
        await stream.start()
    except StreamUnavailable as exc:
        state.startup_error = str(exc)
        raise
    state.stream_intake = StreamIntake(stream)
    owner = f"{state.worker_id or 'keyops'}:{os.getpid()}"
    state.stream_workers = build_workers(stream, state.app.detection, state.app.settings.stream, owner=owner)
    state.stream_workers.start()


async def _stop_stream(state: ApiState) -> None:
    if state.stream_workers is not None:
        await state.stream_workers.close()
    if state.stream_intake is not None:
        await state.stream_intake.stream.close()


async def _start_redis(state: ApiState) -> RedisFanout | None:
    """Subscribe to the change fan-out and install the publisher. Redis being
    down at start is not fatal: verify uses local buckets and the fan-out
    keeps reconnecting."""
    health = state.redis_health
    if health is None:
        return None
    await health.ping(state.redis)  # logs once if Redis is down at start
    fanout = start_fanout(state.app.settings.redis, state.sync, health)
    changes.set_redis_publisher(fanout.publish)
    return fanout
