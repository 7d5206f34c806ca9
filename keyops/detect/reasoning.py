"""Reasoning elicitation: prompts built to make the model write out its
internal reasoning (``keyops.detect.patterns.STRONG``).

Judged by a sequential test on the key's prompt stream (CUSUM, the textbook
detector for a persistent shift in a rate): every prompt moves a score by
its log-likelihood ratio between "the profile's normal share ``p0``" and
"an extraction share ``p1``" (an elicitation prompt adds ``ln(p1/p0)``, any
other prompt subtracts a little), floored at 0. The score counts prompts,
not minutes: a low-and-slow key sending two prompts an hour, a quarter of
them elicitation, is judged as surely as a busy one, only later; an
ordinary key's occasional match drifts back to 0. One window moves the
score by at most ``STEP_MAX``, so persistence in time is needed too. The score reaching
``H`` is ``critical`` evidence (see ``keyops.detect.policy``: persistent
elicitation may act alone).

Requests for a worked, step-by-step answer (``patterns.WEAK``) are reported
in the evidence but never count: a tutoring product's users ask for them all
day. ``p0`` is the profile's share while the key learns; afterwards the key's
own past share (prompt-weighted, from windows without an open reasoning
finding, see ``expected``) when it is lower: a key that never asked for its
reasoning and starts to is a change of character and is judged faster. It is
never looser than the profile: asking for the model's internal reasoning *as
data* is the signal itself, so a key that has done it from its first day is
not learned as normal.
"""

from __future__ import annotations

import math
from functools import lru_cache

from keyops.detect.config import LEVEL_THRESHOLDS, DetectorConfig
from keyops.detect.signal import Signal
from keyops.detect.state import REASONING, KeyState

#: The score at which the evidence is critical. For a key at exactly the
#: profile's share the score is a random walk whose excursions reach ``H``
#: about once in ``10 * e**H`` prompts (the CUSUM's in-control run length;
#: ``bench/cusum_run_length.py`` simulates it): with ``H = 10``, a key that
#: sits at the profile's full normal share all the time (ordinary keys are
#: far below it) would be acted on about once in 200,000 prompts. With p1 =
#: 15%, a third of prompts eliciting reaches it after about 45 prompts, and
#: any share above about 9% is caught eventually. The threshold rests on the
#: profile's stated normal share, not on any traffic generator.
H = 10.0
#: Persistence in time as well as in prompts: one window moves the score by
#: at most this much, so a minute of a thousand elicitation prompts is not
#: yet a verdict (critical needs at least four windows, 20 minutes, of them).
STEP_MAX = H / 4.0
MEMORY = 5000
#: A learned key's own past share replaces the profile's once it rests on
#: this many prompts: ``min(profile, max(P0_MIN, 1.5 * own + 0.005))``. A
#: key that never asked for its reasoning in thousands of prompts and then
#: mixes a quarter of elicitation into its traffic is judged against its own
#: quiet past (at P0_MIN about 18 prompts reach ``H`` at a 25% share, where
#: the profile's 5% needs about 50); the own share can only make the test
#: stricter, never looser than the profile (elicitation is not learned as
#: normal).
OWN_MIN_PROMPTS = 300
P0_MIN = 0.01
#: Critical also needs this many elicitation prompts in the current
#: excursion of the score (since it was last 0): a handful of curious
#: prompts from one user of a quiet key is not a verdict, however unusual.
MIN_STRONG = 6


def shares(cfg: DetectorConfig) -> tuple[float, float]:
    p0, p1, _, _ = _steps(cfg.reasoning_expected)
    return p0, p1


def expected(st: KeyState, cfg: DetectorConfig) -> tuple[float, str]:
    """The normal elicitation share this key is judged against, and its source."""
    if st.learned and st.strong_n >= OWN_MIN_PROMPTS:
        own = min(cfg.reasoning_expected, max(P0_MIN, 1.5 * st.base_strong + 0.005))
        return round(own, 3), "own"
    return cfg.reasoning_expected, "profile"


def learn(st: KeyState, under_review: bool) -> None:
    """The key's own elicitation share, weighted by prompts (at most the
    last ``MEMORY`` prompts count)."""
    if not st.prompts or under_review:
        return
    n = min(st.strong_n, MEMORY)
    st.base_strong = (st.base_strong * n + st.strong) / (n + st.prompts)
    st.strong_n = n + st.prompts


def judge(st: KeyState, cfg: DetectorConfig) -> Signal | None:
    expected_share, source = expected(st, cfg)
    p0, p1, up, down = _steps(expected_share)
    score = st.cusum + min(st.strong * up + (st.prompts - st.strong) * down, STEP_MAX)
    st.cusum = score = max(score, 0.0)
    st.run_strong = st.run_strong + st.strong if score > 0.0 else 0
    if not st.strong or score <= 0.0 or st.acc_prompts < cfg.reasoning_min:
        return None
    floor = score / H * LEVEL_THRESHOLDS[3]
    if st.run_strong < MIN_STRONG:
        floor = min(floor, LEVEL_THRESHOLDS[3] - 0.01)
    if floor <= st.evidence[REASONING]:
        return None  # the evidence already says as much: nothing to add this window
    m = st.acc_prompts
    return Signal(
        0.0,
        f"{st.acc_strong:.0f} of {m:.0f} recent prompts ask the model to write out its internal reasoning "
        f"(profile expects {p0:.0%}; sequential score {score:.1f} of {H:g})",
        {
            "baseline": {
                "source": source,
                "expected_share": p0,
                "profile_share": cfg.reasoning_expected,
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
                "sequential_score": round(score, 2),
                "elicitation_in_excursion": st.run_strong,
            },
            "thresholds": {
                "expected_share": p0,
                "extraction_share": round(p1, 3),
                "critical_score": H,
                "critical_min_elicitation": MIN_STRONG,
            },
            "samples": [s[1] for s in st.samples if s[0] == "reasoning"],
        },
        floor=floor,
    )


@lru_cache(maxsize=64)
def _steps(expected: float) -> tuple[float, float, float, float]:
    """(p0, p1, log-likelihood step of an eliciting prompt, of any other)."""
    p0 = min(max(expected, 0.001), 0.5)
    p1 = min(0.95, max(0.15, 3.0 * p0))
    return p0, p1, math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))
