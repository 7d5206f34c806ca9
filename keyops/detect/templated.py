"""Templated prompts: how many of the window's prompts repeat recent ones.

Two measures, both against the key's last ``RING`` prompts, counted over
the recent hours (decayed counts, half-life one hour):

* skeleton share: same first words with numbers masked (one instruction,
  any content);
* near-duplicate share: a MinHash LSH band in common (the whole prompt is
  nearly the same: a template with short fills).

Each is compared with what is expected by a binomial excess z-score, so a
handful of repeats on a quiet key proves nothing while hundreds do. What is
expected is the key's *own* share, learned in both directions, plus a
margin: most LLM products wrap short user input in a fixed prompt, and a key
that has always been templated is normal for itself. A key that starts
mixing templated sweeps into traffic that never was templated stands out
against its own past. While the key learns, the profile's shares are the
prior (recorded at ``low`` at most, never acted on).
"""

from __future__ import annotations

from keyops.detect.config import DetectorConfig
from keyops.detect.signal import Signal, clamp, excess_z
from keyops.detect.state import KeyState

Z_START = 3.0
Z_FULL = 8.0
MIN_BASELINE_WINDOWS = 12
MARGIN = 0.1
CEILING = 0.97
#: Weight of a new window once learned: slow, in both directions.
FLOOR = 0.01


def own(st: KeyState) -> bool:
    return st.learned and st.base_n >= MIN_BASELINE_WINDOWS


def expected(st: KeyState, cfg: DetectorConfig) -> tuple[float, float]:
    """Expected (skeleton, near-duplicate) shares for this key now."""
    if not own(st):
        return cfg.skeleton_expected, cfg.duplicate_expected
    return min(st.base_skel + MARGIN, CEILING), min(st.base_dup + MARGIN, CEILING)


def learn(st: KeyState, under_review: bool) -> None:
    """Learn the key's own shares from windows with prompts: every window
    while the key learns, then windows without an open templated finding."""
    if not st.prompts or (under_review and st.learned):
        return
    skel = st.skel_hits / st.prompts
    dup = st.dup_hits / st.prompts
    st.base_n += 1
    alpha = max(1.0 / st.base_n, FLOOR)
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
    z_skel = excess_z(st.acc_skel, m, exp_skel) if exp_skel < CEILING and cfg.skeleton_expected < 1.0 else 0.0
    z_dup = excess_z(st.acc_dup, m, exp_dup) if exp_dup < CEILING and cfg.duplicate_expected < 1.0 else 0.0
    z = max(z_skel, z_dup)
    strength = clamp((z - Z_START) / (Z_FULL - Z_START))
    if strength <= 0.0:
        return None
    basis = "own" if own(st) else "profile"
    return Signal(
        strength,
        f"{st.acc_dup:.0f} of {m:.0f} recent prompts near-duplicate earlier ones, {st.acc_skel:.0f} share "
        f"an instruction skeleton (expected {exp_dup:.0%} / {exp_skel:.0%} from the "
        f"{'key' if basis == 'own' else 'profile'})",
        {
            "baseline": {
                "source": basis,
                "near_duplicate_share": round(st.base_dup, 3),
                "skeleton_share": round(st.base_skel, 3),
                "windows_learned": st.base_n,
            },
            "observed": {
                "prompts_in_window": st.prompts,
                "near_duplicate_in_window": st.dup_hits,
                "same_skeleton_in_window": st.skel_hits,
                "recent_prompts": round(m, 1),
                "recent_near_duplicate_share": round(st.acc_dup / m, 3),
                "recent_skeleton_share": round(st.acc_skel / m, 3),
                "z": round(z, 2),
            },
            "thresholds": {
                "expected_near_duplicate_share": round(exp_dup, 3),
                "expected_skeleton_share": round(exp_skel, 3),
                "z_start": Z_START,
            },
            "samples": [s[1] for s in st.samples if s[0] == "near-duplicate"],
        },
    )
