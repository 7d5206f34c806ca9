"""Reasoning elicitation: the share of prompts built to make the model write
out its internal reasoning (``keyops.detect.patterns.STRONG``), against the
profile's normal, over the recent hours (decayed counts, half-life one
hour, so a low-and-slow key is judged on hundreds of prompts). Requests for a worked, step-by-step answer
(``patterns.WEAK``) are reported in the evidence but never count: a tutoring
product's users ask for them all day."""

from __future__ import annotations

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp, excess_z
from keyops.detect.state import KeyState

Z_START = 2.0
Z_FULL = 6.0


def judge(st: KeyState, cfg: DetectorConfig) -> Signal | None:
    m = st.acc_prompts
    # The window itself must show the excess: counts from one earlier burst
    # must not keep adding evidence window after window (hysteresis).
    if m < cfg.reasoning_min or st.strong <= cfg.reasoning_expected * st.prompts:
        return None
    z = excess_z(st.acc_strong, m, cfg.reasoning_expected)
    strength = clamp((z - Z_START) / (Z_FULL - Z_START))
    if strength <= 0.0:
        return None
    return Signal(
        strength,
        f"{st.acc_strong:.0f} of {m:.0f} recent prompts ask the model to write out its internal reasoning "
        f"(profile expects {cfg.reasoning_expected:.0%})",
        {
            "prompts_in_window": st.prompts,
            "elicitation_in_window": st.strong,
            "step_by_step_in_window": st.weak,
            "recent_prompts": round(m, 1),
            "recent_elicitation_share": round(st.acc_strong / m, 3),
            "recent_step_by_step_share": round(st.acc_weak / m, 3),
            "expected_share": cfg.reasoning_expected,
            "z": round(z, 2),
            "samples": [s[1] for s in st.samples if s[0] == "reasoning"],
        },
    )
