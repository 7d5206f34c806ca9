"""A slow GitHub key endpoint cannot stall ``keyops serve``.

A local HTTP server stands in for GitHub's secret-scanning key endpoint and
holds every request until the test lets it go. Meanwhile 48 unsigned
deliveries with made-up key identifiers hit ``/v1/alerts/github``: /readyz
must keep answering fast, and the endpoint is fetched only a bounded number
of times.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.e2e.serving import Served
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


class SlowKeys:
    """Answers 503 to every request, but only once the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                outer.release.wait(60)
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/meta/public_keys/secret_scanning"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_keys() -> Iterator[SlowKeys]:
    keys = SlowKeys()
    yield keys
    keys.close()


def test_unknown_key_ids_do_not_block_readyz_while_github_is_slow(
    servers: Callable[..., Served], slow_keys: SlowKeys
) -> None:
    served = servers(KEYOPS_ALERTS_GITHUB_ENABLED="true", KEYOPS_ALERTS_GITHUB_META_URL=slow_keys.url)
    body = b'[{"token":"x","type":"keyops_api_key","url":"https://example.com","source":"content"}]'
    signature = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()

    def deliver(index: int) -> int:
        headers = {"Github-Public-Key-Identifier": f"made-up-{index}", "Github-Public-Key-Signature": signature}
        with httpx.Client(base_url=served.url, timeout=90) as client:
            return client.post("/v1/alerts/github", content=body, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=48) as pool:
        answers = [pool.submit(deliver, i) for i in range(48)]
        wait_for(lambda: slow_keys.hits >= 1, timeout=20, what="the key endpoint to be asked")
        for _ in range(5):
            started = time.monotonic()
            assert served.http.get("/readyz", timeout=5).status_code == 200
            assert time.monotonic() - started < 2.0, "/readyz waited behind the alert deliveries"
        assert served.http.get("/metrics", timeout=5).status_code == 200
        slow_keys.release.set()
        statuses = [a.result(timeout=90) for a in answers]
    assert set(statuses) <= {503, 401}, statuses
    assert slow_keys.hits <= 2, f"the key endpoint was fetched {slow_keys.hits} times"
