"""``Client``: verify keys and report usage to a keyops daemon over HTTP.

Why it looks like this:

* ``verify`` is on the request path, so it is one POST with a short timeout
  and returns a typed :class:`Verdict`; a refused key is an answer, not an
  exception. Exceptions are for keyops itself failing (:class:`Unavailable`,
  :class:`ServerError`) or refusing the caller (:class:`Refused`: wrong
  token, missing scope, bad request), all under :class:`ClientError`, so a
  caller can fail closed with one ``except``.
* ``report`` must never slow the request path or grow without bound: it
  appends to a bounded queue and returns; a background thread posts batches
  (``batch_size`` events, or whatever is queued every ``flush_interval``
  seconds) to ``POST /v1/usage``. When the queue is full the new event is
  dropped and counted (``dropped``): usage is evidence, not billing, and a
  gateway that stalls because keyops is slow is worse. A batch that fails to
  send is put back (as far as the bound allows) and retried on the next tick.
  ``flush()`` waits until everything queued was sent; ``close()`` (also run
  at interpreter exit) flushes within ``close_timeout``.
* A plaintext ``key`` in an event is replaced by its SHA-256 (``key_hash``)
  before it is queued: key material never leaves the process.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


class ClientError(Exception):
    """Every error this client raises."""


class Unavailable(ClientError):
    """keyops could not be reached or did not answer in time."""


class ServerError(Unavailable):
    """keyops answered with a 5xx."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"keyops answered {status}: {message}")
        self.status = status


class Refused(ClientError):
    """keyops refused the call itself (401/403: the token; 400/413: the request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"keyops refused the call ({status}): {message}")
        self.status = status


@dataclass(frozen=True)
class Verdict:
    """verify's answer. ``valid`` is the one thing to branch on; ``code`` says why."""

    valid: bool
    code: str
    key_id: str | None
    name: str | None
    owner: str | None
    profile: str | None
    version: int | None
    version_state: str | None
    grace_ends_at: str | None
    limit: int | None
    remaining: int | None
    reset: float | None
    requests_per_minute: int | None = None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Verdict:
        limit = doc.get("ratelimit") or {}
        return cls(
            valid=bool(doc["valid"]),
            code=str(doc["code"]),
            key_id=doc.get("key_id"),
            name=doc.get("name"),
            owner=doc.get("owner"),
            profile=doc.get("profile"),
            version=doc.get("version"),
            version_state=doc.get("version_state"),
            grace_ends_at=doc.get("grace_ends_at"),
            limit=limit.get("limit"),
            remaining=limit.get("remaining"),
            reset=limit.get("reset"),
            requests_per_minute=limit.get("requests_per_minute"),
        )


def _message(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.text[:200]
    return str(doc.get("error", doc))[:200] if isinstance(doc, dict) else str(doc)[:200]


def _check(response: httpx.Response) -> None:
    if response.status_code >= 500:
        raise ServerError(response.status_code, _message(response))
    if response.status_code >= 400:
        raise Refused(response.status_code, _message(response))


def _without_plaintext(event: Mapping[str, Any]) -> dict[str, Any]:
    doc = dict(event)
    key = doc.pop("key", None)
    if isinstance(key, str):
        doc["key_hash"] = hashlib.sha256(key.encode("utf-8")).hexdigest()
    elif key is not None:
        raise TypeError("an event's key must be a str")
    return doc


class Client:
    """One keyops daemon at ``addr`` (``http://host:port``), called with ``token``
    (scope ``verify`` for :meth:`verify`, ``usage`` for :meth:`report`)."""

    def __init__(
        self,
        addr: str,
        token: str,
        *,
        timeout: float = 2.0,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        close_timeout: float = 5.0,
    ) -> None:
        if batch_size < 1 or max_queue < batch_size:
            raise ValueError("batch_size must be at least 1 and max_queue at least batch_size")
        self.addr = addr.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.addr, headers=self._headers, timeout=timeout)
        self._async: httpx.AsyncClient | None = None
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.close_timeout = close_timeout
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Events dropped because the queue was full.
        self.dropped = 0
        #: Events keyops refused (bad events; the answer's ``rejected``), and the last send error.
        self.rejected = 0
        self.last_error: ClientError | None = None
        atexit.register(self.close)

    # -- verify -------------------------------------------------------------

    def verify(self, key: str, *, cost: int = 1) -> Verdict:
        """verify's verdict for ``key``; raises :class:`ClientError` only when keyops fails or refuses the call."""
        try:
            response = self._http.post("/v1/keys/verify", content=orjson.dumps({"key": key, "cost": cost}))
        except httpx.HTTPError as exc:
            raise Unavailable(f"keyops at {self.addr} did not answer: {type(exc).__name__}") from None
        _check(response)
        return Verdict.from_document(response.json())

    async def averify(self, key: str, *, cost: int = 1) -> Verdict:
        """:meth:`verify` for async code (the ASGI middleware)."""
        if self._async is None:
            self._async = httpx.AsyncClient(base_url=self.addr, headers=self._headers, timeout=self._timeout)
        try:
            response = await self._async.post("/v1/keys/verify", content=orjson.dumps({"key": key, "cost": cost}))
        except httpx.HTTPError as exc:
            raise Unavailable(f"keyops at {self.addr} did not answer: {type(exc).__name__}") from None
        _check(response)
        return Verdict.from_document(response.json())

    # -- report -------------------------------------------------------------

    def report(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Queue usage events (keyops' event shape); returns how many were queued (the rest were dropped)."""
        docs = [_without_plaintext(e) for e in events]
        with self._cond:
            if self._closed:
                raise ClientError("report() after close()")
            room = max(0, self.max_queue - len(self._queue))
            self._queue.extend(docs[:room])
            self.dropped += len(docs) - min(room, len(docs))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="keyops-report", daemon=True)
                self._thread.start()
            if len(self._queue) >= self.batch_size:
                self._cond.notify_all()
        return min(room, len(docs))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was sent (or given up on); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
                self._cond.notify_all()
        return True

    def close(self) -> None:
        """Flush (within ``close_timeout``), stop the sender, close connections. Idempotent."""
        if self._closed:
            return
        self.flush(self.close_timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.close_timeout)
        self._http.close()
        atexit.unregister(self.close)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(self.flush_interval)
                if self._closed and not self._queue:
                    return
                if len(self._queue) < self.batch_size and not self._closed:
                    # Wait out the interval for a fuller batch unless a flush asks now.
                    self._cond.wait(self.flush_interval)
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                self._in_flight = len(batch)
            if batch:
                ok = self._send(batch)
                with self._cond:
                    self._in_flight = 0
                    if not ok and not self._closed:
                        room = max(0, self.max_queue - len(self._queue))
                        self._queue.extendleft(reversed(batch[:room]))
                        self.dropped += len(batch) - min(room, len(batch))
                    elif not ok:
                        self.dropped += len(batch)
                    self._cond.notify_all()
                if not ok:
                    with self._cond:
                        if not self._closed:
                            self._cond.wait(self.flush_interval)
                        elif self._queue:
                            # Closing and keyops is down: give up on the rest.
                            self.dropped += len(self._queue)
                            self._queue.clear()
                            self._cond.notify_all()

    def _send(self, batch: list[dict[str, Any]]) -> bool:
        try:
            response = self._http.post("/v1/usage", content=orjson.dumps(batch))
            _check(response)
        except Refused as exc:
            # The token or the whole body was refused: retrying cannot help.
            self.last_error = exc
            self.rejected += len(batch)
            return True
        except ClientError as exc:
            self.last_error = exc
            return False
        except httpx.HTTPError as exc:
            self.last_error = Unavailable(f"keyops at {self.addr} did not answer: {type(exc).__name__}")
            return False
        self.rejected += len(response.json().get("rejected", []))
        return True
