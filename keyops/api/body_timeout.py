"""A deadline on reading a request's body (``server.body_timeout``).

uvicorn bounds the idle time between requests (keep-alive) but not how long
a client may take to send a body: a client that sends its headers and a few
bytes, then trickles or stalls ("slowloris"), holds a connection, a slot of
``server.limit_concurrency`` and a handler for as long as it likes.

``BodyDeadlines.wrap`` wraps an ASGI ``receive`` so that the whole body
must arrive within the timeout, counted from the start of the request; past
it, the read raises ``BodyTimeoutError``. The outermost layer answers 408 with
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


class BodyDeadlines:
    """The body deadline of every request in flight in one process.

    A request's reads register their task and deadline in a dict; one
    sweeper task per event loop looks at it a few times per timeout and
    cancels the reads that are past theirs, and such a read raises
    ``BodyTimeoutError``. Per request that is a dict store and delete: no
    timer and no task (``asyncio.timeout``/``wait_for`` per read cost
    several times more, and this wraps every verify request). The sweep
    interval makes the deadline late by at most a quarter of it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._interval = min(1.0, max(0.05, seconds / 4))
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def wrap(self, receive: Receive) -> Receive:
        """``receive`` with a deadline ``seconds`` from now on the whole body."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        reading, expired = self._reading, self._expired
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            if deadline <= loop.time():
                raise BodyTimeoutError
            task = asyncio.current_task()
            assert task is not None
            reading[task] = deadline
            sweeper = self._sweeper
            if sweeper is None or sweeper.done():
                self._sweeper = loop.create_task(self._sweep(loop))
            try:
                message = await receive()
            except asyncio.CancelledError:
                if task in expired:
                    expired.discard(task)
                    task.uncancel()
                    raise BodyTimeoutError from None
                raise
            finally:
                reading.pop(task, None)
            if message.get("type") != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        return timed

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel reads past their deadline; ends when none is in flight
        (the next read starts it again)."""
        while self._reading:
            await asyncio.sleep(self._interval)
            now = loop.time()
            for task, deadline in list(self._reading.items()):
                if deadline <= now:
                    del self._reading[task]
                    self._expired.add(task)
                    task.cancel()


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
