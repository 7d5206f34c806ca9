"""Per-key token buckets for verify: ``burst`` tokens, refilled at
``requests_per_minute / 60`` per second (the key's profile).

Without Redis each process keeps its own buckets (a key's effective limit
then scales with the number of replicas, which the docs say). With Redis the
bucket lives in one hash per key and a Lua script takes tokens atomically,
so every replica draws from the same bucket; the script uses Redis' clock
(``TIME``) so replicas with skewed clocks agree.

While Redis is down (a call fails or times out, or the circuit breaker is
open) ``ResilientBuckets`` takes from this process's own buckets instead, so
verify keeps answering and limits still hold per replica; each such decision
is counted. Once Redis answers again the shared buckets are used again.

``reset`` in the answer is the number of seconds until the bucket is full
again (0 when it is full).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from keyops.api.cache_sync import Limit
from keyops.api.redis_health import RedisHealth, redis_errors


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int


def _decision(allowed: bool, tokens: float, limit: Limit) -> Decision:
    missing = max(0.0, limit.burst - tokens)
    reset = math.ceil(missing / limit.rate) if limit.rate > 0 else 0
    return Decision(allowed, limit.burst, max(0, int(tokens)), reset)


class LocalBuckets:
    """Buckets in this process, keyed by key id."""

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._buckets: dict[str, list[float]] = {}
        self._max_keys = max_keys

    async def take(self, key_id: str, limit: Limit, cost: int = 1) -> Decision:
        return self.take_now(key_id, limit, cost, time.monotonic())

    def take_now(self, key_id: str, limit: Limit, cost: int, now: float) -> Decision:
        bucket = self._buckets.get(key_id)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()  # bounded memory; a cleared bucket starts full
            bucket = self._buckets[key_id] = [float(limit.burst), now]
        tokens = min(float(limit.burst), bucket[0] + (now - bucket[1]) * limit.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        bucket[0], bucket[1] = tokens, now
        return _decision(allowed, tokens, limit)


# KEYS[1] bucket hash; ARGV: burst, rate per second, cost. Returns {allowed, tokens*1000}.
_LUA = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
local ttl = 60
if rate > 0 then ttl = math.ceil(burst / rate) + 60 end
redis.call('EXPIRE', KEYS[1], ttl)
return {allowed, math.floor(tokens * 1000)}
"""


class RedisBuckets:
    """Buckets shared by every replica through Redis (redis.asyncio client)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    async def take(self, key_id: str, limit: Limit, cost: int = 1) -> Decision:
        allowed, millis = await self._script(keys=[f"{self._prefix}rl:{key_id}"], args=[limit.burst, limit.rate, cost])
        return _decision(bool(int(allowed)), int(millis) / 1000.0, limit)


class ResilientBuckets:
    """Shared (Redis) buckets behind a timeout and the circuit breaker, with
    this process's buckets as the fallback."""

    def __init__(self, shared: RedisBuckets, local: LocalBuckets, health: RedisHealth) -> None:
        self.shared = shared
        self.local = local
        self.health = health
        self._errors = redis_errors()

    def take(self, key_id: str, limit: Limit, cost: int = 1) -> Decision | Awaitable[Decision]:
        """A decision at once when Redis is skipped (no await on the hot path
        while the breaker is open), else one to await."""
        if not self.health.allow():
            return self._local(key_id, limit, cost)
        return self._shared(key_id, limit, cost)

    def _local(self, key_id: str, limit: Limit, cost: int) -> Decision:
        self.health.fell_back()
        return self.local.take_now(key_id, limit, cost, time.monotonic())

    async def _shared(self, key_id: str, limit: Limit, cost: int) -> Decision:
        try:
            async with asyncio.timeout(self.health.timeout):
                decision = await self.shared.take(key_id, limit, cost)
        except self._errors as exc:
            self.health.failed(exc)
            return self._local(key_id, limit, cost)
        self.health.succeeded()
        return decision
