"""What a detector says about one window of one key, and the statistics they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Signal:
    """``strength`` in [0, 1] (coordination may give more): how clearly this
    window is anomalous on this detector's axis. The engine accumulates it
    with decay; one window can never reach a high severity on its own."""

    strength: float
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    #: A detector with its own sequential statistic (reasoning's CUSUM)
    #: states the evidence it supports: the key's evidence is at least this.
    floor: float = 0.0


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return low if value < low else high if value > high else value


def excess_z(hits: float, n: float, expected: float) -> float:
    """How many standard deviations ``hits`` out of ``n`` lie above the
    ``expected`` share (binomial, with +1 in the variance so that a handful
    of prompts can never look decisive)."""
    return (hits - expected * n) / math.sqrt(n * expected * (1.0 - expected) + 1.0)


def ewma_update(mu: float, var: float, n: int, x: float, floor: float = 0.01) -> tuple[float, float, int]:
    """Running mean and variance: exact while few samples exist, then an
    exponentially weighted average with weight ``floor`` (slow drift such as
    steady growth is followed; a single burst barely moves it)."""
    n += 1
    alpha = max(1.0 / n, floor)
    delta = x - mu
    mu += alpha * delta
    var = (1.0 - alpha) * (var + alpha * delta * delta)
    return mu, var, n


def robust_z(x: float, mu: float, var: float, min_sd: float) -> float:
    return (x - mu) / max(math.sqrt(var), min_sd)
