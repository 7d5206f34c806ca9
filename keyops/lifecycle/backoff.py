"""Retry delays: exponential backoff with full jitter (pure, unit-testable).

Full jitter (a uniform draw between 0 and the capped exponential delay) keeps
many workers that failed together from retrying together.
"""

from __future__ import annotations

import random


def delay(attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = first retry)."""
    if attempt < 1:
        return 0.0
    cap = min(maximum, initial * (2 ** (attempt - 1)))
    draw = (rng or random).uniform(0.5, 1.0)  # at least half the cap: never a hot loop
    return float(cap * draw)
