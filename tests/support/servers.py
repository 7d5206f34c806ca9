"""Real external servers for tests: OpenBao (Vault's HTTP API) and moto.

Both listen on a free loopback port so test processes can run in parallel
(pytest-xdist gives each worker its own servers). Nothing here sleeps for
timing: starting waits on the server's health endpoint with a deadline.

OpenBao: ``bao server -dev`` keeps everything in memory, unsealed, with a
known root token and a KV v2 engine at ``secret/``. ``seal()`` makes it answer
503 to every request (a real Vault outage); ``unseal()`` brings it back with
its data. ``stop()``/``start()`` for a hard outage (data is lost: dev mode).

moto: ``ThreadedMotoServer`` (AWS APIs over real HTTP). ``stop()`` makes
every call fail with a connection error; ``start()`` brings it back on the
same port (moto's state lives in the process, so secrets survive).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A port nobody listens on right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, *, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _http(method: str, url: str, *, token: str | None = None, body: Any = None, timeout: float = 5) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("X-Vault-Token", token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, None


@dataclass
class OpenBaoServer:
    """An OpenBao dev server. ``addr`` and ``root_token`` are what clients need."""

    port: int = field(default_factory=free_port)
    root_token: str = field(default_factory=lambda: "root-" + secrets.token_hex(8))
    unseal_key: str | None = None
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="keyops-bao-")))

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def available() -> bool:
        return shutil.which("bao") is not None

    def start(self, timeout: float = 30) -> None:
        log_path = self.workdir / "bao.log"
        env = {**os.environ, "HOME": str(self.workdir), "BAO_LOG_LEVEL": "warn"}
        env.pop("VAULT_ADDR", None)
        env.pop("BAO_ADDR", None)
        self.process = subprocess.Popen(
            [
                "bao",
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-dev-root-token-id={self.root_token}",
                "-dev-no-store-token",
            ],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )

        def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"bao server exited: {log_path.read_text(errors='replace')[-2000:]}")
            return self.health() == 200

        wait_until(healthy, timeout=timeout, what="OpenBao health")
        match = wait_until(
            lambda: re.search(r"Unseal Key: (\S+)", log_path.read_text(errors="replace")),
            timeout=timeout,
            what="the unseal key in the OpenBao log",
        )
        self.unseal_key = match.group(1)

    def health(self) -> int:
        """HTTP status of /v1/sys/health (200 active, 503 sealed, 0 down)."""
        try:
            status, _ = _http("GET", f"{self.addr}/v1/sys/health", timeout=1)
            return status
        except (urllib.error.URLError, OSError):
            return 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def seal(self) -> None:
        """From now on every request gets 503 (Vault is sealed)."""
        status, body = _http("PUT", f"{self.addr}/v1/sys/seal", token=self.root_token)
        assert status in (200, 204), (status, body)
        wait_until(lambda: self.health() == 503, what="OpenBao sealed")

    def unseal(self) -> None:
        status, body = _http("PUT", f"{self.addr}/v1/sys/unseal", body={"key": self.unseal_key})
        assert status == 200, (status, body)
        wait_until(lambda: self.health() == 200, what="OpenBao unsealed")

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Vault answers 503 inside the block; back afterwards, data intact."""
        self.seal()
        try:
            yield
        finally:
            self.unseal()

    # -- admin helpers (root token) -------------------------------------------

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, doc = _http(method, f"{self.addr}/v1/{path.lstrip('/')}", token=token or self.root_token, body=body)
        if status >= 400:
            raise RuntimeError(f"OpenBao {method} {path}: HTTP {status}: {doc}")
        return doc

    def write_policy(self, name: str, hcl: str) -> None:
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})

    def create_token(self, policies: list[str], ttl: str = "1h", renewable: bool = True) -> str:
        doc = self.api(
            "POST", "auth/token/create", {"policies": policies, "ttl": ttl, "renewable": renewable, "no_parent": True}
        )
        return str(doc["auth"]["client_token"])

    def enable_approle(self, mount: str = "approle") -> None:
        mounts = self.api("GET", "sys/auth")
        if f"{mount}/" not in (mounts.get("data") or mounts):
            self.api("POST", f"sys/auth/{mount}", {"type": "approle"})

    def approle(self, role: str, policies: list[str], mount: str = "approle") -> tuple[str, str]:
        """Create (or update) an AppRole; returns ``(role_id, secret_id)``."""
        self.enable_approle(mount)
        self.api("POST", f"auth/{mount}/role/{role}", {"token_policies": policies, "token_ttl": "1h"})
        role_id = self.api("GET", f"auth/{mount}/role/{role}/role-id")["data"]["role_id"]
        secret_id = self.api("POST", f"auth/{mount}/role/{role}/secret-id")["data"]["secret_id"]
        return str(role_id), str(secret_id)


#: Policy that lets keyops manage secrets under ``secret/<prefix>``.
def keyops_policy(prefix: str, mount: str = "secret", *, destroy: bool = True) -> str:
    rules = [
        f'path "{mount}/data/{prefix}*" {{ capabilities = ["create", "read", "update"] }}',
        f'path "{mount}/metadata/{prefix}*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}',
        'path "auth/token/lookup-self" { capabilities = ["read"] }',
        'path "auth/token/renew-self" { capabilities = ["update"] }',
    ]
    if destroy:
        rules.append(f'path "{mount}/destroy/{prefix}*" {{ capabilities = ["update"] }}')
    return "\n".join(rules)


@dataclass
class MotoServer:
    """moto's ThreadedMotoServer: AWS over real HTTP on a free port."""

    port: int = field(default_factory=free_port)
    server: Any = None
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_until(self.healthy, timeout=timeout, what="moto server")

    def healthy(self) -> bool:
        try:
            status, _ = _http("GET", f"{self.endpoint}/moto-api/data.json", timeout=1)
            return status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Every AWS call fails (connection refused) inside the block; moto's
        state survives (it lives in this process)."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def reset(self) -> None:
        _http("POST", f"{self.endpoint}/moto-api/reset")

    def env(self) -> dict[str, str]:
        """Environment for any boto3 client (or keyops) to use this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self, service: str = "secretsmanager") -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
