"""The usage-event shape and its validation.

One parser serves every intake: the daemon's ``POST /v1/usage`` and ``keyops
replay FILE`` both call :func:`parse_event`, so a line a gateway can post is
exactly a line replay accepts, and they become the same :class:`UsageEvent`.

Design choices:

* A bad event never raises: ``parse_event`` returns a one-line reason, so an
  intake can name the bad index/line and keep the good ones.
* A plaintext ``key`` is hashed here and dropped at once; nothing downstream
  (engine state, findings, logs) ever sees key material.
* A ``prompt`` is reduced to its sketch here (``keyops.detect.sketches``) and
  the text is dropped: the engine keeps a few integers per prompt, which keeps
  per-key state small and lets gateways send ``prompt_sketch`` instead of the
  text with the same result.
* ``ts`` is event time (when the request started), as an RFC 3339 string or
  epoch seconds. Events too far in the future (beyond ``max_future`` of the
  caller's clock) are rejected: the engine holds an event stamped ahead of
  its clock until the clock reaches it (``keyops.detect.buffer``), and
  ``max_future`` bounds how long that is.
* Free text that can reach storage (the prompt's prefix kept for evidence,
  ``user_agent``, ``endpoint``) is cleaned here by :func:`clean_text`: NUL is
  removed, other C0/C1 control characters (tab and newline too) become a
  space, and lone surrogates become U+FFFD. PostgreSQL refuses ``\\u0000``
  in JSONB and text, and no UTF-8 store takes a lone surrogate, so one such
  character would otherwise cost a whole batch its findings. Printable text,
  the common case, is returned as it is. The sketch is computed from the
  prompt as given, not the cleaned text: it is what ``keyops.client.sketch``
  computes at a gateway for the same prompt, and control characters already
  separate words there, so cleaning would change nothing but the length.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from keyops.detect.sketches import SKETCH_LENGTH, SKETCH_VERSION, sketch_prompt
from keyops.domain.keyformat import hash_key

#: Largest prompt accepted, in characters (a bigger one is rejected, not truncated).
MAX_PROMPT_CHARS = 200_000
#: How far ahead of the intake's clock an event may be stamped.
MAX_FUTURE_SECONDS = 300.0
#: Earliest accepted event time (2000-01-01): catches milliseconds-vs-seconds mistakes.
MIN_TS = 946684800.0
MAX_TOKENS = 100_000_000
MAX_DURATION_MS = 24 * 3600 * 1000
MAX_TEXT = 512
PREFIX_CHARS = 60

# Small memo tables for values every event of a key repeats (validated once;
# cleared when full, so they stay bounded).
_CACHE_MAX = 65536
_IP_CACHE: dict[str, tuple[str, str]] = {}
_REF_CACHE: dict[str, str] = {}
# IPv4 /24 prefixes ("10.1.2") of valid addresses seen -> their network; with
# _OCTETS, a new address in a known /24 is validated without the regex.
_V4_NETWORKS: dict[str, str] = {}
_OCTETS = frozenset(str(i) for i in range(256))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
# NUL is dropped; other C0/C1 controls become a space; lone surrogates U+FFFD.
_CLEAN_TABLE: dict[int, str | None] = {
    0: None,
    **{c: " " for c in range(1, 32)},
    **{c: " " for c in range(0x7F, 0xA0)},
    **{c: "\ufffd" for c in range(0xD800, 0xE000)},
}
_KNOWN_FIELDS = frozenset(
    {
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
    }
)


class UsageEvent(NamedTuple):
    """One request a gateway served for a key, in event time.

    ``key_ref`` is ``"id:<uuid>"`` or ``"hash:<sha256 hex>"``: the intake
    resolves it to a key of the inventory. ``network`` is the IPv4 /24 or
    IPv6 /48 the request came from ("" when the gateway did not say).
    ``sketch`` is the prompt's sketch (``()`` when no prompt was given).

    A named tuple rather than a frozen dataclass: just as immutable, and
    built in half the time (a frozen dataclass sets each field through
    ``object.__setattr__``), which matters at one event per request.
    """

    ts: float
    key_ref: str
    ip: str
    network: str
    endpoint: str
    status: int
    duration_ms: int
    input_tokens: int
    output_tokens: int
    sketch: tuple[int, ...]
    user_agent: str
    prefix: str = ""  # the prompt's first PREFIX_CHARS characters, for evidence

    def to_document(self) -> dict[str, Any]:
        """The event as JSON (with ``prompt_sketch``), re-parseable by ``parse_event``."""
        kind, _, value = self.key_ref.partition(":")
        doc: dict[str, Any] = {"ts": self.ts, ("key_id" if kind == "id" else "key_hash"): value}
        if self.ip:
            doc["ip"] = self.ip
        doc.update(
            endpoint=self.endpoint,
            status=self.status,
            duration_ms=self.duration_ms,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )
        if self.sketch:
            doc["prompt_sketch"] = list(self.sketch)
        if self.user_agent:
            doc["user_agent"] = self.user_agent
        return doc


_new_tuple = tuple.__new__


def clean_text(text: str) -> str:
    """``text`` without what a store cannot keep or a reader should not get
    (see the module docstring); printable text is returned unchanged."""
    if text.isprintable():
        return text
    return text.translate(_CLEAN_TABLE)


def parse_timestamp(value: Any) -> float | str:
    """Epoch seconds from an RFC 3339 string or a number, or a reason."""
    if isinstance(value, bool):
        return "ts must be an RFC 3339 string or epoch seconds, got a boolean"
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts):
            return "ts must be a finite number"
        return ts
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            return "ts is too long to be an RFC 3339 time"
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return f"ts {value[:40]!r} is not an RFC 3339 time (like 2026-11-26T21:00:00Z)"
        if parsed.tzinfo is None:
            return "ts must carry a time zone (end it with Z for UTC)"
        return parsed.timestamp()
    return f"ts must be an RFC 3339 string or epoch seconds, got {type(value).__name__}"


def network_of(ip: str) -> str:
    """The IPv4 /24 or IPv6 /48 that ``ip`` (already valid) belongs to."""
    if ":" not in ip:
        return ip.rpartition(".")[0] + ".0/24"
    net = ipaddress.IPv6Network((ip, 48), strict=False)
    return str(net)


def _int_field(obj: Mapping[str, Any], name: str, default: int, maximum: int) -> int | str:
    value = obj.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            return f"{name} must be a non-negative integer, got {type(value).__name__}"
    if value < 0 or value > maximum:
        return f"{name} must be between 0 and {maximum}, got {value}"
    return value


def _key_ref(obj: Mapping[str, Any]) -> str:
    """``id:...`` / ``hash:...``, or a reason starting with ``!`` (``parse_event``
    looks a known ``key_id`` up in ``_REF_CACHE`` before calling this)."""
    key_id = obj.get("key_id")
    if key_id is not None:
        if not isinstance(key_id, str) or not _UUID.fullmatch(key_id):
            return "!key_id must be a key id (a UUID as printed by keyops keys show --json)"
        if len(_REF_CACHE) >= _CACHE_MAX:
            _REF_CACHE.clear()
        ref = _REF_CACHE[key_id] = "id:" + key_id
        return ref
    key_hash = obj.get("key_hash")
    if key_hash is not None:
        if not isinstance(key_hash, str) or not _HEX64.fullmatch(key_hash.lower()):
            return "!key_hash must be the SHA-256 of the key, 64 hex digits"
        return "hash:" + key_hash.lower()
    key = obj.get("key")
    if key is not None:
        if not isinstance(key, str) or not key or len(key) > 256:
            return "!key must be the key string"
        return "hash:" + hash_key(key)
    return "!the event names no key: give key_id, key_hash or key"


def _sketch_field(value: Any) -> tuple[int, ...] | str:
    if not isinstance(value, list) or len(value) != SKETCH_LENGTH:
        return f"prompt_sketch must be a list of {SKETCH_LENGTH} integers from keyops.client.sketch()"
    # Fast path (plain ints from JSON) in C-level passes; anything else item by item.
    if set(map(type, value)) != {int} or min(value) < 0 or max(value) >= 1 << 32:
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or item < 0 or item >= 1 << 32:
                return "prompt_sketch items must be integers between 0 and 2**32-1"
    if value[0] != SKETCH_VERSION:
        return f"prompt_sketch version {value[0]} is not supported (expected {SKETCH_VERSION}); update keyops.client"
    return tuple(value)


def parse_event(
    obj: Any,
    *,
    now: float | None = None,
    max_future: float = MAX_FUTURE_SECONDS,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
) -> UsageEvent | str:
    """Validate one decoded JSON object; return the event or a one-line reason.

    ``now`` is the intake's clock (epoch seconds); when given, events stamped
    more than ``max_future`` seconds after it are rejected. Unknown fields are
    rejected too, so a misspelt ``output_token`` is not silently zero.
    """
    if not isinstance(obj, dict):
        return f"an event must be a JSON object, got {type(obj).__name__}"
    if not _KNOWN_FIELDS.issuperset(obj):
        for name in obj:
            if name not in _KNOWN_FIELDS:
                return f"unknown field {str(name)[:40]!r} (known: {', '.join(sorted(_KNOWN_FIELDS))})"
    if "ts" not in obj:
        return "ts is missing (the request's start time, RFC 3339 or epoch seconds)"
    raw_ts = obj["ts"]
    ts = raw_ts if raw_ts.__class__ is float and math.isfinite(raw_ts) else parse_timestamp(raw_ts)
    if isinstance(ts, str):
        return ts
    if ts < MIN_TS:
        return "ts is before 2000-01-01 (epoch seconds expected, not milliseconds?)"
    if ts > 4102444800.0:  # 2100-01-01: milliseconds given as seconds
        return "ts is after 2100-01-01 (epoch seconds expected, not milliseconds?)"
    if now is not None and ts > now + max_future:
        return f"ts is {ts - now:.0f}s in the future (at most {max_future:.0f}s allowed); check the gateway's clock"
    get = obj.get
    key_id = get("key_id")
    ref = _REF_CACHE.get(key_id) if key_id.__class__ is str else None
    if ref is None:
        ref = _key_ref(obj)
        if ref[0] == "!":
            return ref[1:]
    ip = get("ip") or ""
    network = ""
    if ip:
        known = _IP_CACHE.get(ip) if ip.__class__ is str else None
        if known is not None:
            ip, network = known
        elif ip.__class__ is str and (split := ip.rpartition("."))[2] in _OCTETS and split[0] in _V4_NETWORKS:
            # An IPv4 address in a /24 already seen: only the last octet is new.
            network = _V4_NETWORKS[split[0]]
        else:
            raw_ip = ip
            if not isinstance(ip, str) or len(ip) > 64:
                return "ip must be an IPv4 or IPv6 address string"
            if not _IPV4.fullmatch(ip):
                try:
                    parsed = ipaddress.ip_address(ip)
                except ValueError:
                    return f"ip {ip[:64]!r} is not an IP address"
                ip = str(parsed.ipv4_mapped or parsed) if isinstance(parsed, ipaddress.IPv6Address) else str(parsed)
            network = network_of(ip)
            if len(_IP_CACHE) >= _CACHE_MAX:
                _IP_CACHE.clear()
            _IP_CACHE[raw_ip] = (ip, network)
            if raw_ip == ip and ":" not in ip:
                if len(_V4_NETWORKS) >= _CACHE_MAX:
                    _V4_NETWORKS.clear()
                _V4_NETWORKS[ip.rpartition(".")[0]] = network
    endpoint = get("endpoint") or ""
    if not isinstance(endpoint, str) or len(endpoint) > MAX_TEXT:
        return f"endpoint must be a string of at most {MAX_TEXT} characters"
    if endpoint and not endpoint.isprintable():
        endpoint = endpoint.translate(_CLEAN_TABLE)
    user_agent = get("user_agent") or ""
    if not isinstance(user_agent, str) or len(user_agent) > MAX_TEXT:
        return f"user_agent must be a string of at most {MAX_TEXT} characters"
    if user_agent and not user_agent.isprintable():
        user_agent = user_agent.translate(_CLEAN_TABLE)
    # Fast path: plain in-range integers (what every gateway sends); anything
    # else goes through _int_field for coercion or a reason.
    status = get("status", 200)
    if status.__class__ is not int or not 0 <= status <= 999:
        status = _int_field(obj, "status", 200, 999)
        if isinstance(status, str):
            return status
    duration = get("duration_ms", 0)
    if duration.__class__ is not int or not 0 <= duration <= MAX_DURATION_MS:
        duration = _int_field(obj, "duration_ms", 0, MAX_DURATION_MS)
        if isinstance(duration, str):
            return duration
    tokens_in = get("input_tokens", 0)
    if tokens_in.__class__ is not int or not 0 <= tokens_in <= MAX_TOKENS:
        tokens_in = _int_field(obj, "input_tokens", 0, MAX_TOKENS)
        if isinstance(tokens_in, str):
            return tokens_in
    tokens_out = get("output_tokens", 0)
    if tokens_out.__class__ is not int or not 0 <= tokens_out <= MAX_TOKENS:
        tokens_out = _int_field(obj, "output_tokens", 0, MAX_TOKENS)
        if isinstance(tokens_out, str):
            return tokens_out
    prompt = get("prompt")
    sketch: tuple[int, ...] = ()
    prefix = ""
    if prompt is not None:
        if "prompt_sketch" in obj:
            return "give prompt or prompt_sketch, not both"
        if not isinstance(prompt, str):
            return f"prompt must be a string, got {type(prompt).__name__}"
        if len(prompt) > max_prompt_chars:
            return f"prompt is {len(prompt)} characters, more than the {max_prompt_chars} accepted"
        if prompt:
            sketch = sketch_prompt(prompt)
            prefix = prompt[:PREFIX_CHARS]
            if not prefix.isprintable():
                prefix = prefix.translate(_CLEAN_TABLE)
    elif get("prompt_sketch") is not None:
        parsed_sketch = _sketch_field(obj["prompt_sketch"])
        if isinstance(parsed_sketch, str):
            return parsed_sketch
        sketch = parsed_sketch
    # The named tuple's own __new__ is a Python function; tuple.__new__ with the
    # fields in order builds the same object without that extra frame.
    return _new_tuple(
        UsageEvent,
        (ts, ref, ip, network, endpoint, status, duration, tokens_in, tokens_out, sketch, user_agent, prefix),
    )
