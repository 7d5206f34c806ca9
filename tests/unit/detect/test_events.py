"""parse_event: the one parser of /v1/usage and replay."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyops.client import sketch
from keyops.detect.events import MAX_PROMPT_CHARS, UsageEvent, parse_event

KEY_ID = "01a219fe-a712-7523-b8e2-f2e4c2e6d38e"
NOW = 1795726860.0


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ts": "2026-11-26T21:00:00.123Z",
        "key_id": KEY_ID,
        "ip": "203.0.113.7",
        "endpoint": "/v1/messages",
        "status": 200,
        "duration_ms": 812,
        "input_tokens": 1200,
        "output_tokens": 900,
        "prompt": "Summarise this ticket for me",
        "user_agent": "gw/1.0",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def test_a_full_event_parses() -> None:
    parsed = parse_event(event(), now=NOW)
    assert isinstance(parsed, UsageEvent)
    assert parsed.ts == pytest.approx(1795726800.123)
    assert parsed.key_ref == "id:" + KEY_ID
    assert parsed.network == "203.0.113.0/24"
    assert len(parsed.sketch) == 9
    assert parsed.prefix == "Summarise this ticket for me"


def test_epoch_seconds_and_rfc3339_give_the_same_time() -> None:
    a = parse_event(event(ts="2026-11-26T21:00:00Z"))
    b = parse_event(event(ts=1795726800))
    assert isinstance(a, UsageEvent) and isinstance(b, UsageEvent)
    assert a.ts == b.ts


def test_plaintext_key_is_hashed_and_dropped() -> None:
    key = "kops_live_" + "A" * 33 + "_abcdef"
    parsed = parse_event(event(key_id=..., key=key))
    assert isinstance(parsed, UsageEvent)
    assert parsed.key_ref == "hash:" + hashlib.sha256(key.encode()).hexdigest()
    assert "A" * 33 not in repr(parsed)


def test_key_hash_is_accepted_lowercased() -> None:
    digest = "AB" * 32
    parsed = parse_event(event(key_id=..., key_hash=digest))
    assert isinstance(parsed, UsageEvent) and parsed.key_ref == "hash:" + digest.lower()


def test_ipv6_network_is_the_48() -> None:
    parsed = parse_event(event(ip="2001:db8:abcd:12::1"))
    assert isinstance(parsed, UsageEvent) and parsed.network == "2001:db8:abcd::/48"


def test_a_sketch_stands_in_for_the_prompt() -> None:
    text = "Imagine and articulate the internal reasoning behind a completed response, step by step."
    with_prompt = parse_event(event(prompt=text))
    with_sketch = parse_event(event(prompt=..., prompt_sketch=sketch(text)))
    assert isinstance(with_prompt, UsageEvent) and isinstance(with_sketch, UsageEvent)
    assert with_prompt.sketch == with_sketch.sketch


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([1, 2], "must be a JSON object"),
        (event(ts=...), "ts is missing"),
        (event(ts=True), "boolean"),
        (event(ts="yesterday"), "not an RFC 3339"),
        (event(ts="2026-11-26T21:00:00"), "time zone"),
        (event(ts=1795640400000), "after 2100"),
        (event(ts=12), "before 2000"),
        (event(ts=NOW + 3600), "in the future"),
        (event(key_id=...), "names no key"),
        (event(key_id="not-a-uuid"), "key_id must be"),
        (event(key_id=..., key_hash="xyz"), "64 hex"),
        (event(ip="999.1.1.1"), "not an IP"),
        (event(ip=17), "ip must be"),
        (event(status="200"), "status must be"),
        (event(status=True), "status must be"),
        (event(duration_ms=-1), "duration_ms must be between"),
        (event(input_tokens=1.5), "input_tokens must be"),
        (event(output_tokens=10**12), "output_tokens must be between"),
        (event(prompt=42), "prompt must be a string"),
        (event(prompt="x" * (MAX_PROMPT_CHARS + 1)), "characters, more than"),
        (event(prompt_sketch=[1, 2, 3]), "not both"),
        (event(prompt=..., prompt_sketch=[1, 2, 3]), "list of 9"),
        (event(prompt=..., prompt_sketch=[9, 0, 0, 0, 0, 0, 0, 0, 0]), "version 9"),
        (event(prompt=..., prompt_sketch=[1, -1, 0, 0, 0, 0, 0, 0, 0]), "between 0 and 2**32-1"),
        (event(user_agent="u" * 600), "user_agent must be"),
        (event(output_token=5), "unknown field 'output_token'"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(doc: Any, fragment: str) -> None:
    result = parse_event(doc, now=NOW)
    assert isinstance(result, str), result
    assert fragment in result
    assert "\n" not in result


def test_future_check_uses_the_given_clock_only() -> None:
    assert isinstance(parse_event(event(ts=NOW + 3600)), UsageEvent)
    assert isinstance(parse_event(event(ts=NOW + 200), now=NOW), UsageEvent)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "ts",
        "key_id",
        "key_hash",
        "key",
        "ip",
        "endpoint",
        "status",
        "duration_ms",
        "input_tokens",
        "output_tokens",
        "prompt",
        "prompt_sketch",
        "user_agent",
    ]
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=8) | JSON)
def test_parse_event_never_raises(doc: Any) -> None:
    result = parse_event(doc, now=NOW)
    assert isinstance(result, (str, UsageEvent))


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=2000))
def test_any_prompt_gives_a_valid_sketch(prompt: str) -> None:
    result = parse_event(event(prompt=prompt))
    assert isinstance(result, UsageEvent)
    if prompt:
        again = parse_event(event(prompt=..., prompt_sketch=list(result.sketch)))
        assert isinstance(again, UsageEvent) and again.sketch == result.sketch


def test_control_characters_are_cleaned_from_stored_text_and_the_sketch_is_the_clients() -> None:
    prompt = "\x00Sum\x00marise\tthis\nticket\x1b[2J for me\x85" + "x" * 80
    parsed = parse_event(event(prompt=prompt, user_agent="gw\x00/1.0\ud800", endpoint="/v1/\x00messages\x07"))
    assert isinstance(parsed, UsageEvent), parsed
    assert parsed.prefix == "Summarise this ticket [2J for me " + "x" * 25  # 60 characters less the 2 NULs
    assert parsed.user_agent == "gw/1.0\ufffd"
    assert parsed.endpoint == "/v1/messages "
    # The sketch is taken from the prompt as posted, as keyops.client.sketch does at a gateway.
    assert parsed.sketch == tuple(sketch(prompt))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_stored_text_is_always_storable_and_printable_text_is_kept(text: str) -> None:
    parsed = parse_event(event(prompt=text or "x", user_agent=text[:500]))
    assert isinstance(parsed, UsageEvent), parsed
    for value in (parsed.prefix, parsed.user_agent):
        assert not any(c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff" for c in value)
        value.encode("utf-8")
    if text.isprintable():
        assert parsed.user_agent == text[:500] and parsed.prefix == (text or "x")[:60]
