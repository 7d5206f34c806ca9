"""``POST /v1/usage`` with LiteLLM's standard logging payload (json_array,
ndjson, single) and OpenTelemetry GenAI names, and the bad bodies of each."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from keyops.api.app import create_app
from keyops.bootstrap import App
from keyops.lifecycle.tokens import TokenService
from keyops.lifecycle.usage import usage_summary


@pytest.fixture
def token(app: App) -> str:
    return TokenService(app.sessions).create("litellm", "verify,usage", actor="test")[1]


@pytest.fixture
def client(app: App, token: str) -> Iterator[TestClient]:
    with TestClient(create_app(app, worker_id="test")) as test_client:
        yield test_client


def _post(client: TestClient, token: str, body: bytes) -> Any:
    return client.post("/v1/usage", content=body, headers={"Authorization": f"Bearer {token}"})


def payload(key_hash: str | None, *, alias: str | None = None, **extra: Any) -> dict[str, Any]:
    """A StandardLoggingPayload as LiteLLM's generic_api callback posts it (the fields keyops reads, some others)."""
    now = time.time()
    doc: dict[str, Any] = {
        "id": "chatcmpl-1", "trace_id": "t", "call_type": "acompletion", "stream": False, "response_cost": 0.0,
        "status": "success", "custom_llm_provider": "openai", "total_tokens": 19, "prompt_tokens": 12,
        "completion_tokens": 7, "startTime": now - 0.25, "endTime": now, "completionStartTime": now,
        "model": "gpt-4o-mini", "model_id": None, "api_base": "http://127.0.0.1:1/v1",
        "metadata": {"user_api_key_hash": key_hash, "user_api_key_alias": alias,
                     "user_api_key_request_route": "/chat/completions", "requester_ip_address": "203.0.113.9",
                     "user_agent": "openai-python/1.0"},
        "cache_hit": None, "request_tags": [], "end_user": "", "requester_ip_address": "203.0.113.9",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "explain step by step"}]}],
        "response": {"choices": []}, "error_str": None, "error_information": None, "model_parameters": {},
        "hidden_params": {},
    }  # fmt: skip
    doc.update(extra)
    return doc


def _issued(app: App, name: str) -> tuple[str, str]:
    issued = app.keys.issue(name, owner="team", profile="interactive", policy="standard", actor="test")
    return issued.key.id, hashlib.sha256(issued.plaintext.encode()).hexdigest()


def test_litellm_formats_are_counted(app: App, client: TestClient, token: str) -> None:
    key_id, key_hash = _issued(app, "team/llm")
    failure = payload(key_hash, status="failure", error_information={"error_code": "429"}, completion_tokens=0)
    array = _post(client, token, orjson.dumps([payload(key_hash), failure]))
    assert array.status_code == 202, array.text
    assert array.json()["accepted"] == 2 and array.json()["rejected"] == []
    ndjson = b"\n".join(orjson.dumps(payload(key_hash)) for _ in range(3))
    assert _post(client, token, ndjson).json()["accepted"] == 3
    single = _post(client, token, orjson.dumps(payload(None, alias="team/llm"), option=orjson.OPT_INDENT_2))
    assert single.status_code == 202 and single.json()["accepted"] == 1, single.text
    summary = usage_summary(app.sessions, key_id)
    assert summary["last_hour"] == {"requests": 6, "errors": 1, "input_tokens": 72, "output_tokens": 35}


def test_otel_names_are_counted(app: App, client: TestClient, token: str) -> None:
    key_id, _ = _issued(app, "team/otel")
    event = {
        "ts": time.time(), "key_id": key_id, "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 2,
        "gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat", "gen_ai.response.finish_reasons": ["stop"],
        "client.address": "198.51.100.4", "http.response.status_code": 503,
    }  # fmt: skip
    answer = _post(client, token, orjson.dumps([event]))
    assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.text
    assert usage_summary(app.sessions, key_id)["last_hour"] == {
        "requests": 1, "errors": 1, "input_tokens": 40, "output_tokens": 2,
    }  # fmt: skip


MALFORMED = [
    ({"prompt_tokens": "12"}, "prompt_tokens must be an integer"),
    ({"startTime": "soon"}, "startTime must be a number"),
    ({"metadata": []}, "metadata must be an object"),
    ({"status": "maybe"}, "status must be 'success' or 'failure'"),
    ({"messages": [1, 2]}, "each message must be an object"),
    ({"metadata": {"user_api_key_hash": "sk-plain"}}, "names no key"),
    ({"model": 5}, "must be strings"),
]


def test_malformed_single_payload_is_400_and_not_counted(app: App, client: TestClient, token: str) -> None:
    key_id, key_hash = _issued(app, "team/bad")
    for change, message in MALFORMED:
        answer = _post(client, token, orjson.dumps({**payload(key_hash), **change}))
        assert answer.status_code == 400, (change, answer.text)
        assert message in answer.json()["error"], change
    assert usage_summary(app.sessions, key_id)["last_hour"]["requests"] == 0


def test_bad_bodies_count_nothing(app: App, client: TestClient, token: str) -> None:
    key_id, key_hash = _issued(app, "team/worse")
    unknown_format = _post(client, token, orjson.dumps({"event": "llm_api_success", "data": {}}))
    assert unknown_format.status_code == 400 and "unknown field" in unknown_format.json()["error"]
    bad_otel = _post(client, token, orjson.dumps({"ts": time.time(), "key_id": key_id, "gen_ai.usage.output_token": 1}))
    assert bad_otel.status_code == 400 and "gen_ai.usage.output_token" in bad_otel.json()["error"]
    both = {"ts": time.time(), "key_id": key_id, "input_tokens": 1, "gen_ai.usage.input_tokens": 1}
    assert _post(client, token, orjson.dumps(both)).status_code == 400
    huge = orjson.dumps([payload(key_hash, messages=[{"role": "user", "content": "x" * 1000}])] * 2000)
    assert _post(client, token, huge).status_code == 413
    unknown_alias = _post(client, token, orjson.dumps([payload(None, alias="team/nobody")]))
    assert unknown_alias.json()["accepted"] == 0
    assert unknown_alias.json()["rejected"][0]["reason"] == "unknown_key"
    mixed = _post(client, token, orjson.dumps([payload(key_hash, prompt_tokens=-1), payload(key_hash)]))
    assert mixed.json()["accepted"] == 1 and mixed.json()["rejected"][0]["index"] == 0
    assert usage_summary(app.sessions, key_id)["last_hour"]["requests"] == 1
