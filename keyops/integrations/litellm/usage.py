"""LiteLLM's standard logging payload as a keyops usage event (pure, no LiteLLM import).

LiteLLM's ``generic_api`` callback posts its ``StandardLoggingPayload``
(``litellm/types/utils.py``, class ``StandardLoggingPayload``) to a URL as a
JSON array (``log_format: json_array``, the default), NDJSON (``ndjson``) or
one object per request (``single``); see ``GenericAPILogger.async_send_batch``
in ``litellm/integrations/generic_api/generic_api_callback.py``.
``POST /v1/usage`` takes all three and maps each payload here:

* key: ``metadata.user_api_key_hash``. LiteLLM records the SHA-256 hex of a
  ``sk-`` key there (``hash_token`` in
  ``litellm/types/proxy/auth/user_api_key_auth.py``:
  ``hashlib.sha256(token.encode()).hexdigest()``); for a key admitted by a
  custom-auth hook it records the ``api_key`` the hook returned, unhashed
  (``UserAPIKeyAuth._safe_hash_litellm_api_key`` only hashes ``sk-`` keys and
  JWTs). keyops' hook returns ``api_key = sha256 hex of the keyops key``, which
  is also the inventory's hash, so both routes name the same version. When
  there is no usable hash, ``metadata.user_api_key_alias`` names the key by
  its keyops name (the hook sets the alias to it);
* ``startTime`` -> ``ts``; ``endTime - startTime`` -> ``duration_ms``;
* ``prompt_tokens`` / ``completion_tokens`` -> ``input_tokens`` / ``output_tokens``;
* ``requester_ip_address`` (top level, else in ``metadata``) -> ``ip``;
  ``user_agent`` likewise;
* ``status`` ``"success"`` -> 200; ``"failure"`` -> the HTTP code in
  ``error_information.error_code`` when it is one, else 500;
* ``messages`` -> ``prompt``: the text of every message (string contents and
  ``{"type": "text"}`` parts), one per line; it is sketched and dropped by
  ``parse_event`` like any prompt;
* ``metadata.user_api_key_request_route`` (else ``call_type``) and ``model``
  -> ``endpoint`` (``"/chat/completions gpt-4o"``).

Every other field is ignored. A field of the wrong type is a clear reason,
never a guess.
"""

from __future__ import annotations

import re
from typing import Any

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_MESSAGES = 1000


def is_litellm_payload(obj: Any) -> bool:
    """A StandardLoggingPayload has these three; a keyops event has none of them."""
    return isinstance(obj, dict) and "call_type" in obj and "startTime" in obj and "metadata" in obj


def _number(obj: dict[str, Any], name: str) -> float | str:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be a number (epoch seconds), got {type(value).__name__}"
    return float(value)


def _tokens(obj: dict[str, Any], name: str) -> int | str:
    value = obj.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be an integer, got {type(value).__name__}"
    return value


def _text(obj: dict[str, Any], metadata: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        value = metadata.get(name)
    return value


def _status(obj: dict[str, Any]) -> int | str:
    status = obj.get("status", "success")
    if status == "success":
        return 200
    if status != "failure":
        return f"status must be 'success' or 'failure', got {str(status)[:40]!r}"
    info = obj.get("error_information") or {}
    if not isinstance(info, dict):
        return "error_information must be an object"
    code = info.get("error_code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) <= 599:
        return int(code)
    return 500


def prompt_text(messages: Any) -> str | None:
    """The text of the messages (string contents and text parts), or None when there are none."""
    if messages is None:
        return None
    if isinstance(messages, str):
        return messages
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
        raise ValueError(f"messages must be a list of at most {MAX_MESSAGES} messages")
    lines: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            raise ValueError("each message must be an object with a content")
        content = message.get("content")
        if isinstance(content, str):
            lines.append(content)
        elif isinstance(content, list):
            lines.extend(
                part["text"]
                for part in content
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            )
        elif content is not None:
            raise ValueError("a message's content must be a string or a list of parts")
    return "\n".join(lines) if lines else None


def to_native(obj: dict[str, Any]) -> dict[str, Any] | str:
    """The keyops usage event for one StandardLoggingPayload (``key_alias`` when
    only the alias names the key: the intake turns it into ``key_id``), or a reason."""
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return "litellm payload: metadata must be an object"
    start = _number(obj, "startTime")
    if isinstance(start, str):
        return "litellm payload: " + start
    doc: dict[str, Any] = {"ts": start}
    end = obj.get("endTime")
    if end is not None:
        finish = _number(obj, "endTime")
        if isinstance(finish, str):
            return "litellm payload: " + finish
        doc["duration_ms"] = max(0, round((finish - start) * 1000))
    key_hash = metadata.get("user_api_key_hash")
    alias = metadata.get("user_api_key_alias")
    if isinstance(key_hash, str) and _HEX64.fullmatch(key_hash):
        doc["key_hash"] = key_hash
    elif isinstance(alias, str) and 0 < len(alias) <= 256:
        doc["key_alias"] = alias
    else:
        return "litellm payload names no key: metadata.user_api_key_hash (SHA-256 hex) or user_api_key_alias"
    for source, target in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
        count = _tokens(obj, source)
        if isinstance(count, str):
            return "litellm payload: " + count
        doc[target] = count
    status = _status(obj)
    if isinstance(status, str):
        return "litellm payload: " + status
    doc["status"] = status
    ip = _text(obj, metadata, "requester_ip_address")
    if ip:
        doc["ip"] = ip
    agent = _text(obj, metadata, "user_agent")
    if agent:
        doc["user_agent"] = agent
    route = metadata.get("user_api_key_request_route") or obj.get("call_type")
    model = obj.get("model")
    if not isinstance(route, str) or (model is not None and not isinstance(model, str)):
        return "litellm payload: call_type and model must be strings"
    doc["endpoint"] = f"{route} {model}"[:512] if model else route[:512]
    try:
        prompt = prompt_text(obj.get("messages"))
    except ValueError as exc:
        return f"litellm payload: {exc}"
    if prompt is not None:
        doc["prompt"] = prompt
    return doc
