"""A real LiteLLM proxy with keyops' custom auth and its generic_api usage callback.

LiteLLM (``litellm[proxy]``) is a heavy install (measured here: 520 s and
756 MB into a fresh virtualenv, on 2 loaded cores), so this test runs only
with ``KEYOPS_TEST_LITELLM=1``. It uses the interpreter named by
``KEYOPS_TEST_LITELLM_PYTHON``, or else creates (once, then reuses) a
virtualenv under ``$XDG_CACHE_HOME/keyops-tests/litellm``. The proxy runs on
loopback in front of a fake OpenAI-compatible upstream served by this test;
keyops' package reaches the proxy through ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serving import Served, free_port, make_token
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("KEYOPS_TEST_LITELLM") != "1", reason="set KEYOPS_TEST_LITELLM=1 to run"),
]


def _litellm_python() -> str:
    given = os.environ.get("KEYOPS_TEST_LITELLM_PYTHON")
    if given:
        return given
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "keyops-tests" / "litellm"
    python = cache / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(cache)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True, timeout=1800)
    return str(python)


class _Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat completion endpoint that always answers the same."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        body = json.dumps({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _requests(cli: Any, name: str) -> int:
    shown = cli("keys", "show", name, "--json")
    assert shown.code == 0, shown.stderr
    return int(json.loads(shown.stdout)["usage"]["last_hour"]["requests"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_litellm_proxy_with_keyops(cli: Any, servers: Callable[..., Served], upstream: str, tmp_path: Path) -> None:
    python = _litellm_python()
    token = make_token(cli)
    keys = {}
    for name in ("team/llm", "team/gone"):
        issued = cli("keys", "issue", name, "--owner", "team", "--profile", "batch", "--dest", f"file:{name}", "--json")
        assert issued.code == 0, issued.stderr
        keys[name] = json.loads(issued.stdout)["key"]
    assert cli("keys", "revoke", "team/gone", "--reason", "test").code == 0
    keyops = servers()
    config = tmp_path / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fake\n"
        "    litellm_params: {model: openai/fake-model, api_base: '" + upstream + "', api_key: upstream-secret}\n"
        "general_settings:\n"
        "  custom_auth: keyops.integrations.litellm.auth.user_api_key_auth\n"
        "litellm_settings:\n"
        "  callbacks: [generic_api]\n"
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEYOPS_")},
        "PYTHONPATH": str(ROOT),
        "KEYOPS_LITELLM_URL": keyops.url,
        "KEYOPS_LITELLM_TOKEN": token,
        "KEYOPS_LITELLM_LIMITS": "batch=600/100000",
        "GENERIC_LOGGER_ENDPOINT": keyops.url + "/v1/usage",
        "GENERIC_LOGGER_HEADERS": f"Authorization=Bearer {token}",
        "DEFAULT_FLUSH_INTERVAL_SECONDS": "1",
        "LITELLM_LOG": "ERROR",
        # LiteLLM refuses to start without one; custom auth answers before it is consulted.
        "LITELLM_MASTER_KEY": "sk-" + secrets.token_hex(32),
    }
    log = (tmp_path / "litellm.log").open("wb")
    proxy = subprocess.Popen(
        [python, "-m", "litellm.proxy.proxy_cli", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proxy.poll() is not None:
            raise AssertionError((tmp_path / "litellm.log").read_text()[-3000:])
        try:
            return httpx.get(url + "/health/liveliness", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def chat(key: str) -> httpx.Response:
        return httpx.post(
            url + "/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "explain step by step"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    try:
        wait_for(ready, timeout=120, interval=0.25, what="the LiteLLM proxy to start")
        passed = chat(keys["team/llm"])
        assert passed.status_code == 200, passed.text
        assert passed.json()["choices"][0]["message"]["content"] == "hi"
        refused = chat(keys["team/gone"])
        assert refused.status_code == 403, refused.text
        assert chat("kops_unknown").status_code == 401
        wait_for(lambda: _requests(cli, "team/llm") == 1, timeout=30, interval=0.25, what="LiteLLM's usage counted")
        assert _requests(cli, "team/gone") == 0
        logs = (tmp_path / "litellm.log").read_text(errors="replace") + keyops.logs()
        assert keys["team/llm"] not in logs
        keyops.terminate()  # fail closed: keyops down, the verdict cache (1 s) runs out, the key is refused
        wait_for(lambda: chat(keys["team/llm"]).status_code == 503, timeout=10, interval=0.25, what="503")
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
        log.close()
