"""Reasoning elicitation: the share of prompts built to make the model write
out its internal reasoning (``keyops.detect.patterns.STRONG``), over the
recent hours (decayed counts, half-life one hour, so a low-and-slow key is
judged on hundreds of prompts).

Requests for a worked, step-by-step answer (``patterns.WEAK``) are reported
in the evidence but never count: a tutoring product's users ask for them all
day. What is expected is the profile's share, whatever the key's past:
asking for the model's internal reasoning *as data* is the signal itself,
so a key that has done it from its first day is not learned as normal. The
key's own past share (prompt-weighted, from windows without an open
reasoning finding) is kept as evidence: an analyst sees whether this is a
change of character or how the key always was.
"""

from __future__ import annotations

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp, excess_z
from keyops.detect.state import KeyState

Z_START = 2.0
Z_FULL = 6.0
MEMORY = 5000


def expected(st: KeyState, cfg: DetectorConfig) -> float:
    return cfg.reasoning_expected


def learn(st: KeyState, under_review: bool) -> None:
    """The key's own elicitation share, weighted by prompts (at most the
    last ``MEMORY`` prompts count)."""
    if not st.prompts or under_review:
        return
    n = min(st.strong_n, MEMORY)
    st.base_strong = (st.base_strong * n + st.strong) / (n + st.prompts)
    st.strong_n = n + st.prompts


def judge(st: KeyState, cfg: DetectorConfig) -> Signal | None:
    m = st.acc_prompts
    exp = expected(st, cfg)
    # The window itself must show the excess: counts from one earlier burst
    # must not keep adding evidence window after window (hysteresis).
    if m < cfg.reasoning_min or st.strong <= exp * st.prompts:
        return None
    z = excess_z(st.acc_strong, m, exp)
    strength = clamp((z - Z_START) / (Z_FULL - Z_START))
    if strength <= 0.0:
        return None
    return Signal(
        strength,
        f"{st.acc_strong:.0f} of {m:.0f} recent prompts ask the model to write out its internal reasoning "
        f"(expected {exp:.0%})",
        {
            "baseline": {
                "source": "profile",
                "own_past_elicitation_share": round(st.base_strong, 3),
                "own_past_prompts": st.strong_n,
            },
            "observed": {
                "prompts_in_window": st.prompts,
                "elicitation_in_window": st.strong,
                "step_by_step_in_window": st.weak,
                "recent_prompts": round(m, 1),
                "recent_elicitation_share": round(st.acc_strong / m, 3),
                "recent_step_by_step_share": round(st.acc_weak / m, 3),
                "z": round(z, 2),
            },
            "thresholds": {"expected_share": round(exp, 3), "z_start": Z_START},
            "samples": [s[1] for s in st.samples if s[0] == "reasoning"],
        },
    )
