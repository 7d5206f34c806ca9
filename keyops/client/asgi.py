"""``KeyopsMiddleware``: protect a Starlette or FastAPI app with keyops.

    app.add_middleware(KeyopsMiddleware, client=Client(addr, token))

Pure ASGI (no Starlette import), so it wraps any ASGI app. For each HTTP
request it takes the key from ``Authorization: Bearer`` (or a header named by
``header``), asks keyops, and either passes the request on, with the verdict
in ``scope["state"]["keyops"]`` (``request.state.keyops`` in Starlette), or
answers itself:

* 401 with ``WWW-Authenticate: Bearer`` for a missing, malformed or unknown
  key, 403 for a revoked, expired or suspended one (the body names the code),
  429 with ``Retry-After`` for a rate-limited one;
* 503 when keyops cannot be asked (``fail_open=True`` lets the request pass
  instead, without a verdict: choose it only where availability beats
  enforcement).

Paths in ``exempt`` (exact, e.g. health checks) are passed without a check.
When ``report`` is true, each checked request's usage (time, status, duration,
caller address, path, user agent; never the key) is queued with
``client.report``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from keyops.client.http import Client, ClientError, Verdict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_FORBIDDEN = frozenset({"REVOKED", "EXPIRED", "SUSPENDED"})


class KeyopsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        client: Client,
        *,
        header: str = "authorization",
        exempt: Iterable[str] = (),
        fail_open: bool = False,
        report: bool = True,
    ) -> None:
        self.app = app
        self.client = client
        self.header = header.lower().encode("latin-1")
        self.exempt = frozenset(exempt)
        self.fail_open = fail_open
        self.report = report

    def _key(self, scope: Scope) -> str | None:
        values = [v for n, v in scope.get("headers", []) if n == self.header]
        if len(values) != 1:
            return None  # none, or several (ambiguous: refused)
        value = values[0].decode("latin-1").strip()
        if self.header == b"authorization":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                return None
            value = value.strip()
        return value or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        started = time.time()
        key = self._key(scope)
        if key is None:
            await _answer(send, 401, "MISSING", "send the key as Authorization: Bearer <key>")
            return
        try:
            verdict = await self.client.averify(key)
        except ClientError:
            if self.fail_open:
                await self.app(scope, receive, send)
                return
            await _answer(send, 503, "UNAVAILABLE", "keyops cannot check the key right now; retry")
            return
        if not verdict.valid:
            await _refuse(send, verdict)
            return
        scope.setdefault("state", {})["keyops"] = verdict
        status = 500

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            if self.report and verdict.key_id:
                self.client.report([_event(scope, verdict, status, started)])


def _event(scope: Scope, verdict: Verdict, status: int, started: float) -> dict[str, Any]:
    event: dict[str, Any] = {
        "ts": started,
        "key_id": verdict.key_id,
        "status": status,
        "duration_ms": max(0, round((time.time() - started) * 1000)),
        "endpoint": str(scope.get("path", ""))[:512],
    }
    client = scope.get("client")
    if client and _is_address(client[0]):
        event["ip"] = client[0]  # not a socket path or a test client's name
    for name, value in scope.get("headers", []):
        if name == b"user-agent":
            event["user_agent"] = value.decode("latin-1")[:512]
            break
    return event


def _is_address(host: Any) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _refuse(send: Send, verdict: Verdict) -> None:
    if verdict.code == "RATE_LIMITED":
        retry = str(max(1, math.ceil(verdict.reset or 1)))
        await _answer(send, 429, verdict.code, "rate limited; retry later", [(b"retry-after", retry.encode())])
    elif verdict.code in _FORBIDDEN:
        await _answer(send, 403, verdict.code, "this key may no longer be used")
    else:
        await _answer(send, 401, verdict.code, "the key is not valid")


async def _answer(
    send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps({"error": message, "code": code})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
    headers.extend(extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
