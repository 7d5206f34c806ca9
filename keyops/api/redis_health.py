"""What this process knows about Redis, shared by everything that calls it.

Redis is optional and only an accelerator: shared rate-limit buckets and a
faster fan-out of key changes. Its outage must therefore cost precision, not
availability. Every Redis call (a bucket take, a publish, a readiness ping)
goes through one ``RedisHealth``: a call is skipped while the circuit
breaker is open, each outcome is recorded, and the figures behind
``keyops_redis_*`` and ``/readyz`` live here. Transitions are logged once
(down, back), not once per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from keyops.config import RedisSettings
from keyops.domain.breaker import CircuitBreaker
from keyops.domain.durations import parse_duration

log = logging.getLogger("keyops.api.redis")


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a failing Redis raises (redis-py's errors, sockets, timeouts);
    anything else is a bug and is left to propagate."""
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


def client_options(settings: RedisSettings, *, asynchronous: bool) -> dict[str, Any]:
    """Client options that make a dead Redis fail within ``timeout_ms``: no
    built-in retries with backoff (redis-py retries three times by default,
    sleeping between tries), connect and read timeouts both bounded."""
    if asynchronous:
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff

        retry: Any = AsyncRetry(NoBackoff(), 0)
    else:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        retry = Retry(NoBackoff(), 0)
    timeout = settings.timeout_ms / 1000.0
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": retry}


class RedisHealth:
    """Breaker, last outcome and counters for one process's Redis calls.

    Called from the event loop (buckets, pings) and from worker threads
    (publishing after a commit), hence the lock around the breaker.
    """

    def __init__(self, breaker: CircuitBreaker, *, timeout: float) -> None:
        self.timeout = timeout
        self._breaker = breaker
        self._lock = threading.Lock()
        #: Did the last Redis call answer? (``keyops_redis_up``)
        self.up = True
        #: Is the pub/sub subscription connected? (``keyops_redis_fanout_up``)
        self.fanout_up = False
        #: Rate-limit decisions taken from this process's buckets because
        #: Redis failed or the breaker was open.
        self.fallbacks = 0
        #: Change notifications not published (failed, or skipped while down).
        self.publish_failures = 0

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> RedisHealth:
        breaker = CircuitBreaker(
            failures=settings.breaker_failures, cooldown=float(parse_duration(settings.breaker_cooldown))
        )
        return cls(breaker, timeout=settings.timeout_ms / 1000.0)

    @property
    def cooldown(self) -> float:
        return self._breaker.cooldown

    @property
    def breaker_state(self) -> str:
        return self._breaker.state

    def allow(self) -> bool:
        with self._lock:
            return self._breaker.allow()

    def succeeded(self) -> None:
        with self._lock:
            closed = self._breaker.success()
            was_up, self.up = self.up, True
        if closed or not was_up:
            log.warning("Redis answers again: rate-limit buckets are shared across replicas again")

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            opened = self._breaker.failure()
            was_up, self.up = self.up, False
        if was_up:
            log.warning(
                "Redis call failed (%s): verify uses this process's own rate-limit buckets until Redis answers",
                type(exc).__name__,
            )
        if opened:
            log.warning(
                "Redis circuit breaker open after %d failures: Redis is skipped, one probe every %gs",
                self._breaker.failures,
                self._breaker.cooldown,
            )

    def fell_back(self) -> None:
        self.fallbacks += 1

    def publish_failed(self) -> None:
        with self._lock:
            self.publish_failures += 1

    async def ping(self, client: Any) -> bool:
        """A cheap PING within the timeout, unless the open breaker says
        Redis is down (then no call is made). True when Redis answered."""
        if not self.allow():
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await client.ping()
        except redis_errors() as exc:
            self.failed(exc)
            return False
        self.succeeded()
        return True
