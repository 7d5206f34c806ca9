"""The circuit breaker's states, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from keyops.domain.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(failures: int = 3, cooldown: float = 5.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(failures=failures, cooldown=cooldown, clock=clock), clock


def test_it_opens_after_the_configured_consecutive_failures_only() -> None:
    breaker, _ = make(failures=3)
    assert breaker.allow()
    assert breaker.failure() is False
    assert breaker.failure() is False
    assert breaker.closed and breaker.allow()
    assert breaker.failure() is True
    assert breaker.state == "open"
    assert not breaker.allow()


def test_a_success_resets_the_count_of_failures() -> None:
    breaker, _ = make(failures=3)
    breaker.failure()
    breaker.failure()
    assert breaker.success() is False  # was closed already
    breaker.failure()
    breaker.failure()
    assert breaker.closed


def test_after_the_cooldown_exactly_one_probe_goes_through() -> None:
    breaker, clock = make(failures=1, cooldown=5.0)
    breaker.failure()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()
    assert breaker.state == "half_open"
    assert not breaker.allow(), "a second caller must not probe while the first one is out"


def test_a_successful_probe_closes_it() -> None:
    breaker, clock = make(failures=1, cooldown=5.0)
    breaker.failure()
    clock.now += 5
    assert breaker.allow()
    assert breaker.success() is True
    assert breaker.closed
    assert all(breaker.allow() for _ in range(10))


def test_a_failed_probe_opens_it_for_another_full_cooldown() -> None:
    breaker, clock = make(failures=2, cooldown=5.0)
    breaker.failure()
    breaker.failure()
    clock.now += 5
    assert breaker.allow()
    assert breaker.failure() is False  # it was down already: no new "opened" event
    assert breaker.state == "open"
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_a_probe_that_never_reports_does_not_wedge_it() -> None:
    breaker, clock = make(failures=1, cooldown=5.0)
    breaker.failure()
    clock.now += 5
    assert breaker.allow()  # the probe's caller is cancelled and never reports
    clock.now += 4
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_zero_cooldown_probes_on_every_call_while_open() -> None:
    breaker, _ = make(failures=1, cooldown=0)
    breaker.failure()
    assert breaker.allow()


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 5.0), (3, -1.0)])
def test_nonsense_parameters_are_refused(failures: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=failures, cooldown=cooldown)
