"""OpenTelemetry GenAI semantic-convention names in usage events.

A gateway that already emits spans or events with the GenAI conventions
(``gen_ai.usage.input_tokens``, ``gen_ai.request.model``, ...) can post those
attributes to ``POST /v1/usage`` as they are, beside or instead of keyops'
own names. :func:`to_native` renames them before ``parse_event`` sees the
event, so validation, hashing and sketching stay in one place.

Only the names listed in :data:`NAMES` and :data:`IGNORED` are accepted:
another ``gen_ai.*`` name is rejected like any unknown field (a misspelt
``gen_ai.usage.output_token`` must not silently count zero). Giving the same
value under both names (``input_tokens`` and ``gen_ai.usage.input_tokens``)
is refused: which one would win is not obvious to the sender.

The model and operation have no field of their own in keyops' event; they
go into ``endpoint`` as ``"<operation> <model>"`` (kept for evidence).
"""

from __future__ import annotations

from typing import Any

#: GenAI / general semantic-convention name -> keyops' own field.
NAMES: dict[str, str] = {
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
    "client.address": "ip",
    "user_agent.original": "user_agent",
    "http.response.status_code": "status",
    "gen_ai.prompt": "prompt",
}
#: Names folded into ``endpoint`` (operation first, then model).
ENDPOINT_PARTS = ("gen_ai.operation.name", "gen_ai.request.model")
#: Names accepted and not kept (they say nothing the detectors use).
IGNORED = frozenset(
    {
        "gen_ai.response.finish_reasons",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.system",
        "gen_ai.provider.name",
        "gen_ai.request.max_tokens",
        "gen_ai.request.temperature",
        "gen_ai.request.top_p",
        "gen_ai.conversation.id",
        "server.address",
        "server.port",
    }
)
_PREFIXES = ("gen_ai.", "client.", "user_agent.", "http.", "server.")


def uses_otel_names(obj: dict[str, Any]) -> bool:
    """Whether any field of ``obj`` is a semantic-convention name (cheap: most events have none)."""
    return any(name.startswith(_PREFIXES) for name in obj)


def to_native(obj: dict[str, Any]) -> dict[str, Any] | str:
    """``obj`` with the convention names renamed to keyops' own, or a one-line reason."""
    doc: dict[str, Any] = {}
    parts: dict[str, str] = {}
    for name, value in obj.items():
        if name in NAMES:
            target = NAMES[name]
            if target in obj:
                return f"{name} and {target} both given: send one of them"
            doc[target] = value
        elif name in ENDPOINT_PARTS:
            if not isinstance(value, str) or len(value) > 200:
                return f"{name} must be a string of at most 200 characters"
            parts[name] = value
        elif name in IGNORED:
            continue
        elif name.startswith(_PREFIXES):
            known = ", ".join(sorted([*NAMES, *ENDPOINT_PARTS, *IGNORED]))
            return f"unknown semantic-convention name {name[:60]!r} (known: {known})"
        else:
            doc[name] = value
    if parts:
        if "endpoint" in obj:
            return "endpoint and gen_ai.operation.name/gen_ai.request.model both given: send one of them"
        doc["endpoint"] = " ".join(parts[n] for n in ENDPOINT_PARTS if n in parts)
    return doc
