"""``keyops.client`` (Client and the ASGI middleware) against a real ``keyops serve``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from keyops.bootstrap import App
from keyops.client import Client, ClientError, Refused, Unavailable, Verdict
from keyops.client.asgi import KeyopsMiddleware
from keyops.lifecycle.usage import usage_summary
from tests.e2e.serving import Served, free_port, make_token
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _issue(app: App, name: str) -> str:
    return app.keys.issue(name, owner="team", profile="batch", policy="standard", actor="test").plaintext


def _counted(app: App, name: str) -> int:
    return int(usage_summary(app.sessions, app.keys.show(name).id)["last_hour"]["requests"])


def _requests(cli: Any, name: str) -> int:
    shown = cli("keys", "show", name, "--json")
    assert shown.code == 0, shown.stderr
    return int(json.loads(shown.stdout)["usage"]["last_hour"]["requests"])


# The client speaks HTTP only: the inventory behind the daemon does not matter here.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_client_and_middleware(cli: Any, servers: Callable[..., Served], inventory: App) -> None:
    token = make_token(cli)
    key = _issue(inventory, "team/client")
    other = _issue(inventory, "team/revoked")
    server = servers()
    client = Client(server.url, token, flush_interval=0.05)
    try:
        verdict = client.verify(key, cost=2)
        assert isinstance(verdict, Verdict) and verdict.valid and verdict.code == "VALID"
        assert verdict.name == "team/client" and verdict.profile == "batch" and verdict.limit
        assert client.verify("kops_not_a_key").code == "MALFORMED"
        with pytest.raises(ClientError):
            client.verify(key, cost=0)  # a bad request is Refused (400), a ClientError
        with pytest.raises(Refused) as refused:
            Client(server.url, "kot_wrong").verify(key)
        assert refused.value.status == 401
        inventory.keys.revoke("team/revoked", reason="test", actor="test")
        wait_for(lambda: client.verify(other).code == "REVOKED", timeout=2, what="REVOKED")

        now = time.time()
        assert client.report([{"ts": now, "key": key, "input_tokens": 3} for _ in range(5)]) == 5
        assert client.flush(10) and client.rejected == 0 and client.dropped == 0
        assert _counted(inventory, "team/client") == 5

        async def hello(request: Request) -> JSONResponse:
            return JSONResponse({"name": request.state.keyops.name})

        api = Starlette(routes=[Route("/hello", hello), Route("/healthz", hello)])
        api.add_middleware(KeyopsMiddleware, client=client, exempt=["/healthz"])
        with TestClient(api, raise_server_exceptions=False) as http:
            ok = http.get("/hello", headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200 and ok.json() == {"name": "team/client"}
            assert http.get("/hello").status_code == 401
            assert http.get("/hello", headers={"Authorization": "Bearer kops_bogus"}).status_code == 401
            two = [("authorization", f"Bearer {key}"), ("authorization", f"Bearer {other}")]
            assert http.get("/hello", headers=two).status_code == 401
            refused = http.get("/hello", headers={"Authorization": f"Bearer {other}"})
            assert refused.status_code == 403 and refused.json()["code"] == "REVOKED"
        assert client.flush(10)
        wait_for(lambda: _counted(inventory, "team/client") == 6, timeout=5, what="the middleware's usage counted")
        # A process that reports and exits without close(): the exit flush sends it.
        code = (
            "import sys, time; from keyops.client import Client;"
            "c = Client(sys.argv[1], sys.argv[2], flush_interval=60);"
            "c.report([{'ts': time.time(), 'key': sys.argv[3]}])"
        )
        subprocess.run([sys.executable, "-c", code, server.url, token, key], check=True, timeout=60)
        assert _counted(inventory, "team/client") == 7
        assert _requests(cli, "team/client") == 7  # as `keyops keys show` prints it
    finally:
        client.close()


def test_keyops_down_is_unavailable_and_the_queue_is_bounded() -> None:
    down = Client(f"http://127.0.0.1:{free_port()}", "t", timeout=0.5, flush_interval=0.05, max_queue=3, batch_size=2)
    with pytest.raises(Unavailable):
        down.verify("kops_x")
    assert down.report([{"ts": time.time(), "key_id": "x"}] * 5) == 3 and down.dropped == 2
    assert not down.flush(0.3)  # keyops is down: nothing can be sent
    down.close_timeout = 0.5
    down.close()
    assert down.dropped == 5 and isinstance(down.last_error, Unavailable)
