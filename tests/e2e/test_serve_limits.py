"""``keyops serve`` against slow and crowding clients (a real process, raw
sockets): a body that stalls gets 408 and a closed connection within
``server.body_timeout`` while other requests are served meanwhile, and past
``server.limit_concurrency`` connections new requests get 503 at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.serving import Served, make_token
from tests.support.waiting import wait_for

BODY_TIMEOUT = 2.0


def _stalled(served: Served, path: str, token: str) -> socket.socket:
    """Headers and part of a body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"key": "kops_live_')
    return sock


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection; fails
    (socket.timeout) if it neither answers nor closes within ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("path", ["/v1/keys/verify", "/v1/usage"])
def test_a_stalled_body_gets_408_while_other_requests_are_served(
    cli: Any, servers: Callable[..., Served], path: str
) -> None:
    token = make_token(cli)
    served = servers(KEYOPS_SERVER_BODY_TIMEOUT=f"{int(BODY_TIMEOUT)}s")
    started = time.monotonic()
    slow = _stalled(served, path, token)
    try:
        # Served meanwhile, on another connection, well before the deadline.
        with httpx.Client(base_url=served.url, timeout=5) as other:
            answer = other.post("/v1/keys/verify", json={"key": "x"}, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200 and answer.json()["code"] == "MALFORMED"
            assert other.get("/healthz").status_code == 200
        assert time.monotonic() - started < BODY_TIMEOUT
        reply = _read_until_closed(slow, timeout=BODY_TIMEOUT + 5)
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"server.body_timeout" in reply
    assert BODY_TIMEOUT - 0.5 <= elapsed <= BODY_TIMEOUT + 3, elapsed
    metrics = served.http.get("/metrics").text
    route = "/v1/keys/verify" if path == "/v1/keys/verify" else "/v1/usage"
    assert f'keyops_http_requests_total{{route="{route}",status="408"}} 1' in metrics, metrics[-3000:]


def test_beyond_limit_concurrency_new_requests_get_503(cli: Any, servers: Callable[..., Served]) -> None:
    token = make_token(cli)
    served = servers(KEYOPS_SERVER_LIMIT_CONCURRENCY="10", KEYOPS_SERVER_BODY_TIMEOUT=f"{int(BODY_TIMEOUT)}s")
    crowd = [_stalled(served, "/v1/keys/verify", token) for _ in range(10)]
    try:
        with httpx.Client(base_url=served.url, timeout=5) as late:
            wait_for(lambda: late.get("/healthz").status_code == 503, timeout=5, what="503 beyond the limit")
        # The stalled clients time out and are dropped; service resumes.
        for sock in crowd:
            _read_until_closed(sock, timeout=BODY_TIMEOUT + 5)
        with httpx.Client(base_url=served.url, timeout=5) as after:
            wait_for(lambda: after.get("/healthz").status_code == 200, timeout=5, what="service after the crowd left")
    finally:
        for sock in crowd:
            sock.close()
