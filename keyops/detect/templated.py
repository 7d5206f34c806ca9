"""Templated prompts: how many of the window's prompts repeat recent ones.

Two measures, both against the key's last ``RING`` prompts, counted over
the recent hours (decayed counts, half-life one hour):

* skeleton share: same first words with numbers masked (one instruction,
  any content);
* near-duplicate share: a MinHash LSH band in common (the whole prompt is
  nearly the same: a template with short fills).

Each is compared with what is expected by a binomial excess z-score, so a
handful of repeats on a quiet key proves nothing while hundreds do. What is
expected is the profile's share (``expected_share``,
``expected_near_duplicate_share``), or, once the key has a learned history,
the key's own share plus a margin when that is lower: a proxy that starts
mixing 25% templated extraction into a key whose prompts were never
templated stands out, while a key that was always templated is judged by its
profile alone.
"""

from __future__ import annotations

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp, excess_z
from keyops.detect.state import KeyState

Z_START = 3.0
Z_FULL = 8.0
MIN_BASELINE_WINDOWS = 12
MARGIN = 0.05
FLOOR = 0.02


def expected(st: KeyState, cfg: DetectorConfig) -> tuple[float, float]:
    """Expected (skeleton, near-duplicate) shares for this key now."""
    if not st.learned or st.base_n < MIN_BASELINE_WINDOWS:
        return cfg.skeleton_expected, cfg.duplicate_expected
    return (
        min(cfg.skeleton_expected, max(st.base_skel + MARGIN, FLOOR)),
        min(cfg.duplicate_expected, max(st.base_dup + MARGIN, FLOOR)),
    )


def learn(st: KeyState) -> None:
    """Learn the key's own shares from windows with prompts (clipped after
    learning, so a templated episode barely moves them)."""
    if not st.prompts:
        return
    skel = st.skel_hits / st.prompts
    dup = st.dup_hits / st.prompts
    st.base_n += 1
    alpha = max(1.0 / st.base_n, 0.01)
    if st.learned and st.base_n > MIN_BASELINE_WINDOWS:
        skel = min(skel, st.base_skel + 0.1)
        dup = min(dup, st.base_dup + 0.1)
    st.base_skel += alpha * (skel - st.base_skel)
    st.base_dup += alpha * (dup - st.base_dup)


def judge(st: KeyState, cfg: DetectorConfig) -> Signal | None:
    m = st.acc_prompts
    if m < cfg.templated_min or st.prompts == 0:
        return None
    exp_skel, exp_dup = expected(st, cfg)
    # The window itself must show the excess (see reasoning.judge).
    if st.skel_hits <= exp_skel * st.prompts and st.dup_hits <= exp_dup * st.prompts:
        return None
    z_skel = excess_z(st.acc_skel, m, exp_skel) if cfg.skeleton_expected < 1.0 else 0.0
    z_dup = excess_z(st.acc_dup, m, exp_dup) if cfg.duplicate_expected < 1.0 else 0.0
    z = max(z_skel, z_dup)
    strength = clamp((z - Z_START) / (Z_FULL - Z_START))
    if strength <= 0.0:
        return None
    return Signal(
        strength,
        f"{st.acc_dup:.0f} of {m:.0f} recent prompts near-duplicate earlier ones, {st.acc_skel:.0f} share "
        f"an instruction skeleton "
        f"(expected {exp_dup:.0%} / {exp_skel:.0%})",
        {
            "prompts_in_window": st.prompts,
            "near_duplicate_in_window": st.dup_hits,
            "same_skeleton_in_window": st.skel_hits,
            "recent_prompts": round(m, 1),
            "recent_near_duplicate_share": round(st.acc_dup / m, 3),
            "recent_skeleton_share": round(st.acc_skel / m, 3),
            "expected_near_duplicate_share": round(exp_dup, 3),
            "expected_skeleton_share": round(exp_skel, 3),
            "z": round(z, 2),
            "samples": [s[1] for s in st.samples if s[0] == "near-duplicate"],
        },
    )
