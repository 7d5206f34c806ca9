"""The compose stack's wiring and the README's first-key walk-through, without
Docker: the keyops service's environment and keyops.toml from
deploy/compose.yaml, with the other services swapped for the same kinds of
servers on loopback (PostgreSQL, Redis when configured, OpenBao for the
Vault dev server, moto's server). The migrate service's command runs first,
then the keyops service's command, probed the way its healthcheck does
(/readyz), then the walk-through: issue to Vault and AWS, read both stores,
create a gateway token, verify, rotate, verify old and new."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.support.databases import POSTGRES_ENV, REDIS_ENV, postgres_base_url, postgres_schema_url, sqlite_url
from tests.support.servers import MotoServer, OpenBaoServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.vault, pytest.mark.aws]


def compose_service(name: str) -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    service: dict[str, Any] = doc["services"][name]
    return service


def http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """PostgreSQL like the compose stack when the tests have it, else SQLite."""
    if postgres_base_url() is None:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set in CI")
        yield sqlite_url(tmp_path)
        return
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def stack_env(
    tmp_path: Path, database: str, openbao: OpenBaoServer, moto_server: MotoServer
) -> dict[str, str]:  # fmt: skip
    """The keyops service's environment from compose.yaml, pointed at local servers."""
    if openbao.health() == 503:
        openbao.unseal()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYOPS_", "VAULT_", "AWS_"))}
    env.update({k: str(v) for k, v in compose_service("keyops")["environment"].items()})
    # The config file compose mounts at /etc/keyops/keyops.toml.
    assert env["KEYOPS_CONFIG"] == "/etc/keyops/keyops.toml"
    env["KEYOPS_CONFIG"] = str(ROOT / "deploy" / "compose" / "keyops.toml")
    # The other services, at their loopback addresses instead of compose's names.
    assert env["KEYOPS_DATABASE_URL"].startswith("postgresql+psycopg://")
    env["KEYOPS_DATABASE_URL"] = database
    assert env["VAULT_ADDR"] == "http://vault:8200"
    env["VAULT_ADDR"], env["VAULT_TOKEN"] = openbao.addr, openbao.root_token
    assert env["AWS_ENDPOINT_URL"] == "http://moto:5000"
    env["AWS_ENDPOINT_URL"] = moto_server.endpoint
    if os.environ.get(REDIS_ENV):
        env["KEYOPS_REDIS_URL"] = os.environ[REDIS_ENV]
    else:
        env.pop("KEYOPS_REDIS_URL")
    assert env["KEYOPS_STREAM_URL"] == "nats://nats:4222"
    # The usage stream is walked through in tests/e2e/test_stream_serve.py,
    # on a private nats-server; here the stack judges usage in the replica.
    env.pop("KEYOPS_STREAM_URL")
    env["KEYOPS_STORES_FILE_DIRECTORY"] = str(tmp_path / "secrets")
    env["KEYOPS_LOG_LEVEL"] = "WARNING"
    return env


def keyops(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyops", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_compose_stack_first_key(stack_env: dict[str, str], tmp_path: Path, moto_server: MotoServer) -> None:
    env = stack_env
    # migrate: its command, before keyops starts (database.auto_migrate is off).
    migrate = compose_service("migrate")["command"]
    serve_args = compose_service("keyops")["command"]
    assert keyops(env, tmp_path, *migrate).returncode == 0

    port = free_port()
    env["KEYOPS_SERVER_PORT"] = str(port)
    env["KEYOPS_SERVER_HOST"] = "127.0.0.1"  # compose.yaml: 0.0.0.0 inside the container
    daemon = subprocess.Popen(
        [sys.executable, "-m", "keyops", *serve_args],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        # The compose healthcheck asks /readyz.
        try:
            wait_until(lambda: http("GET", f"{base}/readyz")[0] == 200 or daemon.poll() is not None,
                       timeout=40, what="/readyz")  # fmt: skip
        except TimeoutError:
            pytest.fail(f"/readyz never answered 200: {http('GET', f'{base}/readyz')}")
        assert daemon.poll() is None, daemon.communicate()[1][-2000:]

        # The README walk-through, step by step.
        name = f"payments/demo-{secrets.token_hex(3)}"
        issued = keyops(
            env, tmp_path, "keys", "issue", name, "--owner", "team-payments", "--profile", "interactive",
            "--dest", f"vault:secret/{name}", "--dest", f"aws-sm:{name}", "--json",
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        key = json.loads(issued.stdout)["key"]

        def vault_key(path: str) -> str:  # `vault kv get -field=api_key secret/<path>`
            request = urllib.request.Request(f"{env['VAULT_ADDR']}/v1/secret/data/{path}")
            request.add_header("X-Vault-Token", env["VAULT_TOKEN"])
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(json.loads(response.read())["data"]["data"]["api_key"])

        assert vault_key(name) == key
        aws = boto3.client(
            "secretsmanager", region_name="us-east-1", endpoint_url=moto_server.endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        assert aws.get_secret_value(SecretId=name)["SecretString"] == key

        created = keyops(env, tmp_path, "tokens", "create", f"gateway-{secrets.token_hex(3)}", "--scopes",
                         "verify,usage", "--json")  # fmt: skip
        assert created.returncode == 0, created.stderr
        token = json.loads(created.stdout)["token"]

        def verify(candidate: str) -> dict[str, Any]:
            status, body = http("POST", f"{base}/v1/keys/verify", token=token, body={"key": candidate})
            assert status == 200, body
            assert isinstance(body, dict)
            return body

        first = verify(key)
        assert first["valid"] is True and first["code"] == "VALID" and first["name"] == name

        rotated = keyops(env, tmp_path, "keys", "rotate", name)
        assert rotated.returncode == 0, rotated.stderr
        # moto 5.2 keeps answering the old version when no stage is named
        # (AWS itself follows AWSCURRENT); name the stage explicitly.
        new_key = aws.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]
        assert new_key != key, rotated.stdout + rotated.stderr
        assert vault_key(name) == new_key
        wait_until(lambda: verify(new_key)["valid"], timeout=10, what="the rotated key to verify")
        old = verify(key)
        assert old["valid"] is True, old  # previous version, inside its grace
        status, metrics = http("GET", f"{base}/metrics")
        assert status == 200 and "keyops_verify_total" in metrics
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
