"""Volume: requests per minute against the profile's limit, tokens per day
against the profile's budget, and the window's request count against the
key's own learned baseline.

The baseline is a running mean/variance of ``log1p(requests per window)``
over active windows: exact during the learning period, then exponentially
weighted, so steady growth (up to doubling a day) is followed while a burst
is not learned: after learning, windows with an open volume finding do not
update it, and the others are clipped at mean + 3 sd. Volume is one axis
(load): alone it never acts, whatever the burst.
"""

from __future__ import annotations

import math

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp, ewma_update, robust_z
from keyops.detect.state import KeyState

MIN_BASELINE_WINDOWS = 12
MIN_SD = 0.35
#: Weight of a new window once the baseline is established: about a day and
#: a half of memory at one active window in five minutes.
FLOOR = 0.02


def judge(st: KeyState, cfg: DetectorConfig, z: float) -> Signal | None:
    """``z`` is :func:`jump` of this window (the engine computes it once)."""
    limit = cfg.rpm * cfg.volume_factor
    over = st.peak_minute / limit
    # Over the daily budget counts in windows that keep spending faster than
    # the budget allows (one burst early in the day is not re-counted all day).
    window_tokens = st.tok_in + st.tok_out
    s_day = 1.0 if st.day_tokens > cfg.tokens_per_day and window_tokens * 288 > cfg.tokens_per_day else 0.0
    if over <= 1.0 and not s_day and z <= cfg.volume_z:
        return None  # the common quiet window: every part below would be 0
    s_limit = clamp(over - 1.0) if over > 1.0 else 0.0
    s_base = clamp((z - cfg.volume_z) / 3.0)
    strength = max(s_limit, s_day, s_base)
    if strength <= 0.0:
        return None
    baseline = math.expm1(st.vol_mu)
    spread = max(math.sqrt(st.vol_var), MIN_SD)
    parts = []
    if s_limit:
        parts.append(f"{st.peak_minute} requests in a minute (limit {cfg.rpm})")
    if s_day:
        parts.append(f"{st.day_tokens} tokens today (budget {cfg.tokens_per_day})")
    if s_base:
        parts.append(f"{st.n} requests in 5 minutes vs a learned {baseline:.1f} (z={z:.1f})")
    return Signal(
        strength,
        "; ".join(parts),
        {
            "baseline": {
                "requests_per_window": round(baseline, 2),
                "typical_range": [
                    round(math.expm1(max(st.vol_mu - 2 * spread, 0.0)), 1),
                    round(math.expm1(st.vol_mu + 2 * spread), 1),
                ],
                "windows_learned": st.vol_n,
            },
            "observed": {
                "requests_in_window": st.n,
                "peak_requests_per_minute": st.peak_minute,
                "tokens_today": st.day_tokens,
                "z": round(z, 2),
            },
            "thresholds": {
                "requests_per_minute": cfg.rpm,
                "tokens_per_day": cfg.tokens_per_day,
                "baseline_z": cfg.volume_z,
            },
        },
    )


def jump(st: KeyState) -> float:
    """The window's volume z-score against the baseline (0 before learning)."""
    if not st.learned or st.vol_n < MIN_BASELINE_WINDOWS:
        return 0.0
    return robust_z(math.log1p(st.n), st.vol_mu, st.vol_var, MIN_SD)


def learn(st: KeyState, under_review: bool) -> None:
    if under_review and st.learned:
        return
    x = math.log1p(st.n)
    if st.vol_n >= MIN_BASELINE_WINDOWS:
        x = min(x, st.vol_mu + 3.0 * max(math.sqrt(st.vol_var), MIN_SD))
    st.vol_mu, st.vol_var, st.vol_n = ewma_update(st.vol_mu, st.vol_var, st.vol_n, x, FLOOR)
