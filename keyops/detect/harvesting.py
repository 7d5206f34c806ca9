"""Output harvesting: long outputs bought with short inputs.

Judged against the key's own history once it has one: the window's
output/input token ratio (log) and its mean output per request (log), each
as a robust z-score over what the key learned. A code assistant whose short
requests always get long answers is normal for itself; a key that starts
sweeping short prompts for long answers stands out. While the key learns,
the profile's ``max_output_input_ratio`` is the prior (recorded, not acted
on: see ``keyops.detect.policy``).
"""

from __future__ import annotations

import math

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp, ewma_update, robust_z
from keyops.detect.state import KeyState

MIN_BASELINE_WINDOWS = 12
MIN_SD = 0.3
MIN_REQUESTS = 5
FLOOR = 0.02


def _log_ratio(st: KeyState) -> float:
    return math.log((st.tok_out + 1.0) / (st.tok_in + 1.0))


def _established(st: KeyState) -> bool:
    return st.learned and st.out_n >= MIN_BASELINE_WINDOWS and st.rat_n >= MIN_BASELINE_WINDOWS


def spend_z(st: KeyState) -> float:
    """The window's mean output per request as a z-score over the baseline."""
    ok = st.n - st.errors
    if ok <= 0 or not _established(st):
        return 0.0
    return robust_z(math.log1p(st.tok_out / ok), st.out_mu, st.out_var, MIN_SD)


def judge(st: KeyState, cfg: DetectorConfig, z: float) -> Signal | None:
    """``z`` is :func:`spend_z` of this window (the engine computes it once)."""
    ok = st.n - st.errors
    if ok < MIN_REQUESTS:
        return None
    ratio = st.tok_out / max(st.tok_in, 1)
    own = _established(st)
    if own:
        ratio_z = robust_z(_log_ratio(st), st.rat_mu, st.rat_var, MIN_SD)
        if ratio_z <= cfg.harvesting_z and z <= cfg.harvesting_z:
            return None
        strength = clamp((max(ratio_z, z) - cfg.harvesting_z) / 3.0)
        basis = "the key's own history"
    else:
        ratio_z = 0.0
        if ratio <= cfg.max_ratio:
            return None
        strength = clamp(math.log2(ratio / cfg.max_ratio))
        basis = "the profile (the key is still learning)"
    if strength <= 0.0:
        return None
    learned_ratio = math.exp(st.rat_mu) if st.rat_n else 0.0
    return Signal(
        strength,
        f"output/input ratio {ratio:.1f} against {basis}"
        + (f" ({learned_ratio:.1f} learned, z={ratio_z:.1f})" if own else f" (limit {cfg.max_ratio:g})")
        + f"; {st.tok_out / ok:.0f} output tokens per request",
        {
            "baseline": {
                "source": "own" if own else "profile",
                "output_input_ratio": round(learned_ratio, 2) if own else cfg.max_ratio,
                "output_tokens_per_request": round(math.expm1(st.out_mu), 1),
                "windows_learned": st.rat_n,
            },
            "observed": {
                "requests": ok,
                "input_tokens": st.tok_in,
                "output_tokens": st.tok_out,
                "output_input_ratio": round(ratio, 2),
                "ratio_z": round(ratio_z, 2),
                "output_z": round(z, 2),
            },
            "thresholds": {"baseline_z": cfg.harvesting_z, "max_output_input_ratio": cfg.max_ratio},
        },
    )


def learn(st: KeyState, under_review: bool) -> None:
    ok = st.n - st.errors
    if ok <= 0 or (under_review and st.learned):
        return
    x = math.log1p(st.tok_out / ok)
    r = _log_ratio(st)
    if st.out_n >= MIN_BASELINE_WINDOWS:
        x = min(x, st.out_mu + 3.0 * max(math.sqrt(st.out_var), MIN_SD))
    if st.rat_n >= MIN_BASELINE_WINDOWS:
        r = min(r, st.rat_mu + 3.0 * max(math.sqrt(st.rat_var), MIN_SD))
    st.out_mu, st.out_var, st.out_n = ewma_update(st.out_mu, st.out_var, st.out_n, x, FLOOR)
    st.rat_mu, st.rat_var, st.rat_n = ewma_update(st.rat_mu, st.rat_var, st.rat_n, r, FLOOR)
