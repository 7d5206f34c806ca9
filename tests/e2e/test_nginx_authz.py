"""A real NGINX (Debian's, with ``auth_request``) in front of a small
upstream and a real ``keyops serve``, configured by the shipped
``deploy/gateways/nginx.conf`` with only its ports and paths substituted."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyops.bootstrap import App, build
from keyops.config import load_settings
from keyops.domain import keyformat
from keyops.lifecycle.tokens import TokenService
from tests.e2e.serving import FAST, Served, free_port
from tests.support.databases import sqlite_url
from tests.support.waiting import wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "gateways" / "nginx.conf"
BURST = 30  # the built-in "interactive" profile


class Upstream:
    """The API behind NGINX: answers 200 and remembers each request's headers."""

    def __init__(self) -> None:
        seen: list[dict[str, str]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({k.lower(): v for k, v in self.headers.items()})
                body = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def nginx_config(workdir: Path, *, keyops_port: int, upstream_port: int, listen_port: int, token: str) -> Path:
    """The shipped file with its ports and paths replaced (each must occur
    exactly once, so a change to the shipped file cannot silently escape
    this test), wrapped in the main context a private nginx needs."""
    token_file = workdir / "keyops-token.conf"
    token_file.write_text(f'proxy_set_header X-Keyops-Token "{token}";\n')
    text = SHIPPED.read_text()
    for old, new in (
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{keyops_port};"),
        ("server 127.0.0.1:9000;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 127.0.0.1:8000;", f"listen 127.0.0.1:{listen_port};"),
        ("/var/log/nginx/keyops-api.log", str(workdir / "access.log")),
        ("/etc/nginx/keyops-token.conf", str(token_file)),
    ):
        assert text.count(old) == 1, f"{SHIPPED} no longer has exactly one {old!r}"
        text = text.replace(old, new)
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = workdir / "nginx.conf"
    config.write_text(
        f"""worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} info;
events {{ worker_connections 64; }}
http {{
{temp}
    access_log {workdir / "default-access.log"};
{text}
}}
"""
    )
    return config


@pytest.fixture
def stack(base_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does)")
    env = {**base_env, "KEYOPS_DATABASE_URL": sqlite_url(tmp_path)}
    app = build(load_settings(env=env))
    upstream = Upstream()
    served = Served(
        env,
        tmp_path,
        extra_env={
            **FAST,
            "KEYOPS_AUTHZ_RATE_LIMITED_STATUS": "403",
            "KEYOPS_SERVER_TRUSTED_PROXIES": "127.0.0.1",
        },
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        token = TokenService(app.sessions).create("nginx", "verify", actor="test")[1]
        # Issued before keyops starts: its cache loads them (waiting for a
        # new key by asking would count a use).
        keys = {name: issue(app, f"team/{name}") for name in ("good", "listed", "limited")}
        served.start()
        workdir = tmp_path / "nginx"
        workdir.mkdir()
        port = free_port()
        config = nginx_config(
            workdir, keyops_port=served.port, upstream_port=upstream.port, listen_port=port, token=token
        )
        proc = subprocess.Popen(
            [nginx, "-p", str(workdir), "-c", str(config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "stderr.log").open("wb"),
            stdin=subprocess.DEVNULL,
        )

        def listening() -> bool:
            assert proc is not None
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited: {(workdir / 'stderr.log').read_text()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, timeout=10, interval=0.05, what="nginx listening")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield {
                "app": app,
                "keys": keys,
                "client": client,
                "upstream": upstream,
                "served": served,
                "workdir": workdir,
            }
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        served.close()
        upstream.close()
        app.close()


def issue(app: App, name: str) -> str:
    return app.keys.issue(name, owner="team-a", profile="interactive", policy="standard", actor="test").plaintext


def verify_counts(served: Served) -> dict[str, float]:
    """keyops_verify_total by code, from the server's /metrics."""
    text = served.http.get("/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'keyops_verify_total\{code="(\w+)"\} (\S+)', text)}


def test_nginx_in_front_of_keyops(stack: dict[str, Any]) -> None:
    app: App = stack["app"]
    client: httpx.Client = stack["client"]
    upstream: Upstream = stack["upstream"]
    good, listed, limited = (stack["keys"][name] for name in ("good", "listed", "limited"))

    # A valid key reaches the upstream with who it is; the key itself stops at NGINX.
    answer = client.get("/v1/chat/completions", headers={"Authorization": f"Bearer {good}"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True}
    seen = upstream.seen[-1]
    assert seen["x-keyops-key-id"] == app.keys.show("team/good").id
    assert seen["x-keyops-key-name"] == "team/good"
    assert seen["x-keyops-owner"] == "team-a"
    assert seen["x-keyops-profile"] == "interactive"
    assert seen["x-keyops-client-ip"] == "127.0.0.1"
    assert "authorization" not in seen
    assert answer.headers["ratelimit-limit"] == str(BURST)
    # A client cannot claim an identity: its X-Keyops-* headers are replaced.
    client.get("/", headers={"x-api-key": good, "X-Keyops-Owner": "someone-else"})
    assert upstream.seen[-1]["x-keyops-owner"] == "team-a"

    # An unknown key: 401 with keyops' WWW-Authenticate; the upstream never sees it.
    before = len(upstream.seen)
    unknown = client.get("/v1/chat", headers={"x-api-key": keyformat.generate("kops_live").plaintext})
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert unknown.json()["code"] == "NOT_FOUND"
    assert client.get("/v1/chat").status_code == 401

    # A key in the query string: refused, in no log (NGINX's or keyops').
    served: Served = stack["served"]
    counted = verify_counts(served)
    assert counted["VALID"] >= 2 and counted["NOT_FOUND"] >= 1  # the counter is live
    refused = client.get(f"/v1/chat?api_key={listed}", headers={"x-api-key": listed})
    assert refused.status_code == 401
    assert refused.json()["code"] == "KEY_IN_QUERY"
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert len(upstream.seen) == before
    assert verify_counts(served) == counted  # nothing counted

    # A rate-limited key: keyops answers 403 (authz.rate_limited_status), NGINX gives the client 429.
    statuses = []
    for _ in range(BURST + 5):
        statuses.append(client.get("/v1/chat", headers={"x-api-key": limited}))
    assert [a.status_code for a in statuses[:BURST]] == [200] * BURST
    throttled = next(a for a in statuses if a.status_code != 200)
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["code"] == "RATE_LIMITED"

    # A revoked key: 403 within a second, the code in the body.
    assert client.get("/v1/chat", headers={"x-api-key": good}).status_code == 200
    app.keys.revoke("team/good", actor="test")
    started = time.monotonic()
    wait_for(
        lambda: client.get("/v1/chat", headers={"x-api-key": good}).status_code == 403,
        timeout=1.0,
        interval=0.02,
        what="403 through NGINX after revoke",
    )
    assert time.monotonic() - started < 1.0
    revoked = client.get("/v1/chat", headers={"x-api-key": good})
    assert json.loads(revoked.text)["code"] == "REVOKED"
    assert revoked.headers["x-keyops-code"] == "REVOKED"

    workdir: Path = stack["workdir"]
    logs = (workdir / "access.log").read_text() + (workdir / "error.log").read_text() + served.logs()
    for key in (good, listed, limited):
        assert key not in logs
    assert re.search(r'"GET /v1/chat" 401', (workdir / "access.log").read_text())
