"""The pure mappings of foreign usage shapes (LiteLLM, OpenTelemetry GenAI) and the hook's settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keyops.api.usage_events import split_body
from keyops.detect import otel
from keyops.detect.events import parse_event
from keyops.integrations.litellm import usage as litellm_usage
from keyops.integrations.litellm.auth import Limits, parse_limits

HASH = "ab" * 32


def _payload(**extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "call_type": "acompletion", "startTime": 1_800_000_000.0, "endTime": 1_800_000_000.5, "model": "gpt-4o",
        "prompt_tokens": 9, "completion_tokens": 4, "status": "success", "requester_ip_address": "192.0.2.1",
        "metadata": {"user_api_key_hash": HASH, "user_api_key_request_route": "/chat/completions"},
        "messages": [{"role": "user", "content": "hello"},
                     {"role": "user", "content": [{"type": "text", "text": "x"}]}],
    }  # fmt: skip
    doc.update(extra)
    return doc


def test_litellm_payload_maps_to_a_keyops_event() -> None:
    doc = litellm_usage.to_native(_payload())
    assert isinstance(doc, dict)
    event = parse_event(doc)
    assert not isinstance(event, str)
    assert event.key_ref == "hash:" + HASH and event.ip == "192.0.2.1" and event.duration_ms == 500
    assert (event.input_tokens, event.output_tokens, event.status) == (9, 4, 200)
    assert event.endpoint == "/chat/completions gpt-4o" and event.prefix == "hello x" and event.sketch


def test_litellm_failure_status_and_alias() -> None:
    failed = litellm_usage.to_native(_payload(status="failure", error_information={"error_code": "429"}))
    assert isinstance(failed, dict) and failed["status"] == 429
    unknown = litellm_usage.to_native(_payload(status="failure", error_information={"error_code": "boom"}))
    assert isinstance(unknown, dict) and unknown["status"] == 500
    by_alias = litellm_usage.to_native(_payload(metadata={"user_api_key_hash": "sk-x", "user_api_key_alias": "a/b"}))
    assert isinstance(by_alias, dict) and by_alias["key_alias"] == "a/b" and "key_hash" not in by_alias


def test_otel_names() -> None:
    doc = otel.to_native({"ts": 1, "gen_ai.usage.input_tokens": 5, "gen_ai.request.model": "m", "server.port": 1})
    assert doc == {"ts": 1, "input_tokens": 5, "endpoint": "m"}
    assert "unknown semantic-convention name" in str(otel.to_native({"gen_ai.usage.tokens": 1}))
    assert "both given" in str(otel.to_native({"input_tokens": 1, "gen_ai.usage.input_tokens": 1}))
    assert not otel.uses_otel_names({"ts": 1, "key_id": "x"})


def test_single_object_bodies() -> None:
    assert split_body(b'{\n  "ts": 1\n}') == [{"ts": 1}]
    assert split_body(b'{"ts": 1}\n{"ts": 2}') == [{"ts": 1}, {"ts": 2}]


def test_limits_setting() -> None:
    assert parse_limits("batch=600/200000, interactive=60/") == {
        "batch": Limits(600, 200000),
        "interactive": Limits(60, None),
    }
    for bad in ("batch", "batch=1", "batch=x/1", "=1/2"):
        with pytest.raises(ValueError, match="KEYOPS_LITELLM_LIMITS"):
            parse_limits(bad)


def test_imports_without_litellm() -> None:
    """The daemon maps LiteLLM payloads without LiteLLM; ``keyops.client`` stays light until ``Client`` is used."""
    light = "import sys, keyops.client; assert 'httpx' not in sys.modules, 'keyops.client loaded httpx'"
    subprocess.run([sys.executable, "-c", light], check=True)
    code = (
        "import sys, keyops.integrations.litellm.auth, keyops.api.usage_formats;"
        "assert 'litellm' not in sys.modules, 'LiteLLM was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
