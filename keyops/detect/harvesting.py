"""Output harvesting: long outputs against short inputs. The window's
output/input token ratio against the profile's ``max_output_input_ratio``,
and its mean output per request against the key's learned baseline."""

from __future__ import annotations

import math

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp, ewma_update, robust_z
from keyops.detect.state import KeyState

MIN_BASELINE_WINDOWS = 12
MIN_SD = 0.3
MIN_REQUESTS = 5


def spend_z(st: KeyState) -> float:
    """The window's mean output per request as a z-score over the baseline."""
    ok = st.n - st.errors
    if ok <= 0 or not st.learned or st.out_n < MIN_BASELINE_WINDOWS:
        return 0.0
    return robust_z(math.log1p(st.tok_out / ok), st.out_mu, st.out_var, MIN_SD)


def judge(st: KeyState, cfg: DetectorConfig, z: float) -> Signal | None:
    """``z`` is :func:`spend_z` of this window (the engine computes it once)."""
    ok = st.n - st.errors
    if ok < MIN_REQUESTS:
        return None
    ratio = st.tok_out / max(st.tok_in, 1)
    if ratio <= cfg.max_ratio and z <= cfg.harvesting_z:
        return None  # the common quiet window: both parts below would be 0
    s_ratio = clamp(math.log2(ratio / cfg.max_ratio)) if ratio > cfg.max_ratio else 0.0
    s_base = clamp((z - cfg.harvesting_z) / 3.0)
    strength = max(s_ratio, s_base)
    if strength <= 0.0:
        return None
    return Signal(
        strength,
        f"output/input ratio {ratio:.1f} (limit {cfg.max_ratio:g}); "
        f"{st.tok_out / ok:.0f} output tokens per request vs a learned {math.expm1(st.out_mu):.0f}",
        {
            "requests": ok,
            "input_tokens": st.tok_in,
            "output_tokens": st.tok_out,
            "ratio": round(ratio, 2),
            "max_ratio": cfg.max_ratio,
            "output_z": round(z, 2),
        },
    )


def learn(st: KeyState) -> None:
    ok = st.n - st.errors
    if ok <= 0:
        return
    x = math.log1p(st.tok_out / ok)
    if st.out_n >= MIN_BASELINE_WINDOWS:
        x = min(x, st.out_mu + 3.0 * max(math.sqrt(st.out_var), MIN_SD))
    st.out_mu, st.out_var, st.out_n = ewma_update(st.out_mu, st.out_var, st.out_n, x)
