"""keyops for applications and gateways written in Python.

* ``Client(addr, token)``: ``verify(key, cost=...)`` and ``report(events)``
  (batched, sent in the background, flushed at exit); see
  ``keyops.client.http``.
* ``keyops.client.asgi.KeyopsMiddleware``: protects a Starlette or FastAPI
  app with keyops.
* ``sketch(prompt)``: the prompt's sketch, for gateways that must not send
  prompt text.


A gateway that must not send prompt text to keyops (privacy, data residency)
computes a *sketch* locally and posts it instead of the prompt::

    from keyops.client import sketch

    event = {
        "ts": "2026-11-26T21:00:00.123Z",
        "key_hash": sha256_hex_of_the_key,
        "ip": client_ip, "status": 200, "duration_ms": 812,
        "input_tokens": 1200, "output_tokens": 900,
        "prompt_sketch": sketch(prompt_text),
        "user_agent": request_user_agent,
    }
    # POST [event, ...] to /v1/usage

The sketch is 9 integers (format version, length, reasoning-elicitation
flags, a template skeleton hash and five MinHash LSH band hashes; see
``keyops.detect.sketches``). It cannot be turned back into the prompt, yet the
detectors judge a sketched event exactly as they would judge the same event
with its prompt: the daemon computes the very same sketch from a posted
prompt. Importing this package loads only the standard library and keyops'
pure sketching code (the HTTP client, and httpx, load when ``Client`` is first
named), so it is cheap to vendor into a gateway.
"""

from __future__ import annotations

from typing import Any

from keyops.detect.sketches import sketch_prompt

__all__ = [
    "Client",
    "ClientError",
    "Refused",
    "ServerError",
    "Unavailable",
    "Verdict",
    "sketch",
]
_LAZY = frozenset(__all__) - {"sketch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from keyops.client import http

        return getattr(http, name)
    raise AttributeError(f"module 'keyops.client' has no attribute {name!r}")


def sketch(prompt: str) -> list[int]:
    """The ``prompt_sketch`` for ``prompt``: deterministic across processes and platforms."""
    if not isinstance(prompt, str):
        raise TypeError("sketch() takes the prompt text as a str")
    return list(sketch_prompt(prompt))
