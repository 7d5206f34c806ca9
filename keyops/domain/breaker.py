"""A circuit breaker: stop calling a dependency that keeps failing, and let a
single probe through now and then to find out when it is back.

Closed: every call goes through; ``failures`` consecutive failures open it.
Open: no call goes through until ``cooldown`` seconds have passed; then the
next caller is the probe (half-open). Half-open: only the probe goes
through; its success closes the breaker, its failure opens it for another
cooldown. A probe that never reports (its caller was cancelled) does not
wedge the breaker: after another cooldown a new probe is let through.

Pure: the clock is passed in, nothing here sleeps or does I/O, and it is not
thread-safe (callers that share one across threads hold a lock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, *, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError("a breaker needs at least 1 failure to open")
        if cooldown < 0:
            raise ValueError("a breaker's cooldown cannot be negative")
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._state: State = "closed"
        self._consecutive = 0
        self._since = 0.0  # when it opened, or when the probe was let through

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def allow(self) -> bool:
        """May this call go to the dependency? (Claims the probe when due.)"""
        if self._state == "closed":
            return True
        now = self._clock()
        if now - self._since < self.cooldown:
            return False
        self._state, self._since = "half_open", now
        return True

    def success(self) -> bool:
        """Record a call that worked; True when this closed an open breaker."""
        reopened = self._state != "closed"
        self._state, self._consecutive = "closed", 0
        return reopened

    def failure(self) -> bool:
        """Record a call that failed; True when this opened the breaker."""
        if self._state == "half_open":
            self._state, self._since = "open", self._clock()
            return False
        self._consecutive += 1
        if self._state == "closed" and self._consecutive >= self.failures:
            self._state, self._since = "open", self._clock()
            return True
        return False
