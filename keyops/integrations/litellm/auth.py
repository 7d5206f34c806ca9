"""LiteLLM proxy custom auth: admit a request when keyops says its key is valid.

In the proxy's config::

    general_settings:
      custom_auth: keyops.integrations.litellm.auth.user_api_key_auth

LiteLLM calls ``user_api_key_auth(request, api_key)`` for each request and
expects a ``UserAPIKeyAuth`` back or an exception (``litellm/proxy/auth/
user_api_key_auth.py``: ``user_custom_auth(request=request, api_key=api_key)``
then ``UserAPIKeyAuth.model_validate``). The hook reads its settings from the
proxy's environment, since LiteLLM passes it nothing else:

==============================  =========================================
``KEYOPS_LITELLM_URL``          the daemon, e.g. ``http://keyops:8080``
``KEYOPS_LITELLM_TOKEN``        a keyops token with scope ``verify``
``KEYOPS_LITELLM_CACHE``        seconds a verdict is reused (default 1)
``KEYOPS_LITELLM_FAIL_OPEN``    ``1``: admit when keyops cannot be asked
                                (default ``0``: refuse with 503)
``KEYOPS_LITELLM_LIMITS``       ``profile=rpm/tpm,...``: the rpm/tpm limits
                                handed to LiteLLM per keyops profile
                                (default: rpm is the profile's
                                requests_per_minute from verify's
                                answer, no tpm)
==============================  =========================================

Why these choices:

* The answer names the key the way the usage intake matches it: ``api_key``
  (hence ``metadata.user_api_key_hash`` in LiteLLM's logging payload) is the
  SHA-256 hex of the keyops key, which LiteLLM keeps as it is (it only hashes
  ``sk-`` keys and JWTs, ``UserAPIKeyAuth._safe_hash_litellm_api_key``) and
  which is the inventory's hash; ``key_alias`` is the keyops name. The
  plaintext never reaches LiteLLM's logs or spend tables.
* A short cache (per key hash, valid and refused verdicts alike) keeps a
  burst from costing one keyops round trip per request, while a revocation
  still takes effect within the cache time. LiteLLM enforces the returned
  ``rpm_limit``/``tpm_limit`` itself on every request.
* Fail closed by default: keyops down means no request passes (503), unless
  the operator chose availability with ``KEYOPS_LITELLM_FAIL_OPEN=1``.

LiteLLM is imported on the first call, inside the proxy; importing this
module needs only keyops' client.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyops.client.http import Client, ClientError, Verdict

_FORBIDDEN = frozenset({"REVOKED", "EXPIRED", "SUSPENDED"})
_CACHE_MAX = 100_000


@dataclass(frozen=True)
class Limits:
    rpm: int | None
    tpm: int | None


def parse_limits(text: str) -> dict[str, Limits]:
    """``"batch=600/200000,interactive=60/"`` -> per-profile limits (an empty side is no limit)."""
    limits: dict[str, Limits] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        profile, sep, values = item.partition("=")
        rpm, slash, tpm = values.partition("/")
        try:
            if not sep or not profile.strip() or not slash:
                raise ValueError
            limits[profile.strip()] = Limits(int(rpm) if rpm.strip() else None, int(tpm) if tpm.strip() else None)
        except ValueError:
            raise ValueError(
                f"KEYOPS_LITELLM_LIMITS: {item[:60]!r} is not profile=rpm/tpm (e.g. batch=600/200000)"
            ) from None
    return limits


class KeyopsAuth:
    """The hook with its collaborators given (``user_api_key_auth`` builds one from the environment)."""

    def __init__(
        self,
        client: Client,
        *,
        cache_seconds: float = 1.0,
        fail_open: bool = False,
        limits: Mapping[str, Limits] | None = None,
    ) -> None:
        self.client = client
        self.cache_seconds = cache_seconds
        self.fail_open = fail_open
        self.limits = dict(limits or {})
        self._cache: dict[str, tuple[float, Verdict]] = {}

    async def __call__(self, request: Any, api_key: str) -> Any:
        from litellm.proxy._types import ProxyException, UserAPIKeyAuth  # type: ignore[import-not-found,unused-ignore]

        key = (api_key or "").strip()
        if key[:7].lower() == "bearer ":
            key = key[7:].strip()
        if not key:
            raise ProxyException("no API key: send Authorization: Bearer <key>", "auth_error", "api_key", 401)
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            verdict = cached[1]
        else:
            try:
                verdict = await self.client.averify(key)
            except ClientError:
                if self.fail_open:
                    return UserAPIKeyAuth(api_key=digest, key_alias=None, metadata={"keyops": "unchecked"})
                raise ProxyException(
                    "keyops cannot check the key right now; retry", "auth_error", "api_key", 503
                ) from None
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (now + self.cache_seconds, verdict)
        if verdict.valid:
            # The rpm of the key's profile unless KEYOPS_LITELLM_LIMITS says
            # otherwise; tpm only from that setting (profiles budget tokens
            # per day, which LiteLLM's per-minute tpm_limit cannot express).
            limit = self.limits.get(verdict.profile or "", Limits(verdict.requests_per_minute, None))
            return UserAPIKeyAuth(
                api_key=digest,
                key_alias=verdict.name,
                key_name=verdict.name,
                user_id=verdict.owner,
                rpm_limit=limit.rpm,
                tpm_limit=limit.tpm,
                metadata={"keyops_key_id": verdict.key_id, "keyops_profile": verdict.profile},
            )
        if verdict.code == "RATE_LIMITED":
            retry = str(max(1, math.ceil(verdict.reset or 1)))
            raise ProxyException(
                "rate limited by keyops; retry later", "auth_error", "api_key", 429, headers={"retry-after": retry}
            )
        if verdict.code in _FORBIDDEN:
            raise ProxyException(f"key {verdict.code.lower()}", "auth_error", "api_key", 403)
        raise ProxyException("invalid API key", "auth_error", "api_key", 401)


_default: KeyopsAuth | None = None


def from_environment(env: Mapping[str, str]) -> KeyopsAuth:
    """The hook configured by ``KEYOPS_LITELLM_URL``, ``KEYOPS_LITELLM_TOKEN`` and ``KEYOPS_LITELLM_*``."""
    url, token = env.get("KEYOPS_LITELLM_URL"), env.get("KEYOPS_LITELLM_TOKEN")
    if not url or not token:
        raise RuntimeError(
            "keyops LiteLLM auth: set KEYOPS_LITELLM_URL and KEYOPS_LITELLM_TOKEN in the proxy's environment"
        )
    try:
        cache = float(env.get("KEYOPS_LITELLM_CACHE", "1"))
    except ValueError:
        raise RuntimeError("keyops LiteLLM auth: KEYOPS_LITELLM_CACHE must be a number of seconds") from None
    fail_open = env.get("KEYOPS_LITELLM_FAIL_OPEN", "0").strip().lower() in ("1", "true", "yes")
    limits = parse_limits(env.get("KEYOPS_LITELLM_LIMITS", ""))
    return KeyopsAuth(Client(url, token), cache_seconds=cache, fail_open=fail_open, limits=limits)


async def user_api_key_auth(request: Any, api_key: str) -> Any:
    """LiteLLM's custom-auth entry point (see the module docstring)."""
    global _default
    if _default is None:
        _default = from_environment(os.environ)
    return await _default(request, api_key)
