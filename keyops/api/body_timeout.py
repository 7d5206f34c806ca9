"""A deadline on reading a request's body (``server.body_timeout``).

uvicorn bounds the idle time between requests (keep-alive) but not how long
a client may take to send a body: a client that sends its headers and a few
bytes, then trickles or stalls ("slowloris"), holds a connection, a slot of
``server.limit_concurrency`` and a handler for as long as it likes.

``deadline_receive`` wraps an ASGI ``receive`` so that the whole body must
arrive within the timeout, counted from the start of the request; past it,
the read raises ``BodyTimeoutError``. The outermost layer answers 408 with
``Connection: close`` (uvicorn then closes the connection); inside Starlette
an exception handler does the same. Waiting is asynchronous, so a stalled
body blocks no other request. Once the body is complete, ``receive`` is
passed through untouched (it then only waits for a disconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY_TIMEOUT_MESSAGE = b'{"error":"the request body did not arrive in time (server.body_timeout); send it at once"}'


class BodyTimeoutError(Exception):
    """The request body was not fully received within ``server.body_timeout``."""


def deadline_receive(receive: Receive, seconds: float) -> Receive:
    """``receive`` with a deadline ``seconds`` from now on the whole body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    complete = False

    async def timed() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise BodyTimeoutError
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            raise BodyTimeoutError from None
        if message.get("type") != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return timed


async def send_timeout_response(send: Send) -> None:
    """The 408 answer, closing the connection (the rest of the body may
    still be on its way and can no longer be told from a next request)."""
    body = BODY_TIMEOUT_MESSAGE
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
