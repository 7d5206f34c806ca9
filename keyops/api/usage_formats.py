"""The event shapes ``POST /v1/usage`` accepts besides keyops' own (pure).

* LiteLLM's standard logging payload, as its ``generic_api`` callback posts
  it (``keyops.integrations.litellm.usage``);
* OpenTelemetry GenAI attribute names (``keyops.detect.otel``).

Each raw item becomes a keyops event document (then checked by
``parse_event`` like any other) or a one-line reason. A LiteLLM payload that
names its key only by alias comes back with ``key_alias``; the intake looks
the alias up as a key name (:func:`aliases`, :func:`with_key_id`).
"""

from __future__ import annotations

from typing import Any

from keyops.detect import otel
from keyops.integrations.litellm import usage as litellm_usage


def native(raw: Any) -> Any:
    """``raw`` as a keyops event document (or a reason string); a keyops event is returned as it is."""
    if not isinstance(raw, dict):
        return raw
    if litellm_usage.is_litellm_payload(raw):
        return litellm_usage.to_native(raw)
    if otel.uses_otel_names(raw):
        return otel.to_native(raw)
    return raw


def aliases(docs: list[Any]) -> set[str]:
    """The key names LiteLLM payloads gave instead of a hash."""
    return {d["key_alias"] for d in docs if isinstance(d, dict) and isinstance(d.get("key_alias"), str)}


def with_key_id(doc: dict[str, Any], ids_by_name: dict[str, str]) -> dict[str, Any] | str:
    """``doc`` with its ``key_alias`` replaced by the key's id, or a reason when no key has that name."""
    alias = doc.pop("key_alias")
    key_id = ids_by_name.get(alias)
    if key_id is None:
        return "unknown key: no key in the inventory is named like the payload's user_api_key_alias"
    return {**doc, "key_id": key_id}
