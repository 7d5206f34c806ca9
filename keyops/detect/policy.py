"""From accumulated evidence to a severity, and from a severity to an action.

Hysteresis and combination live here:

* Evidence per detector is a leaky integrator (half-life ``HALF_LIFE``);
  one window adds at most 1 (a coordination round 4.5), and the levels need 1, 2.5, 5
  and 8. A single noisy window can reach ``low``; ``high`` needs about half
  an hour of sustained anomaly, ``critical`` about an hour.
* Detectors are grouped into *axes* (load, automation, intent, output,
  origin, coordination). One axis alone is capped (``SOLO_CAP``): a demo-day
  burst is only load, templated prompts on an interactive key only
  automation; neither can go past ``medium`` (notify). Two independent axes
  at ``medium`` or more lift the severity one step above the weaker of them.
  Network novelty with a new client and a volume jump, strong reasoning
  elicitation, and a confirmed cluster are themselves combinations and may
  go further alone.
* The profile's ladder maps the severity to an action; an action is taken
  only when it ranks above what was already done to the key.
"""

from __future__ import annotations

from keyops.detect.config import LEVEL_THRESHOLDS
from keyops.detect.state import DETECTORS

# volume, concurrency, network, templated, reasoning, harvesting, coordinated
SOLO_CAP = (2, 2, 3, 2, 3, 2, 4)
AXIS = (0, 0, 1, 2, 3, 4, 5)
MIN_FINDING_LEVEL = 2  # findings are recorded from "medium" up

assert len(SOLO_CAP) == len(AXIS) == len(DETECTORS)


def level(evidence: float) -> int:
    lvl = 0
    for threshold in LEVEL_THRESHOLDS:
        if evidence >= threshold:
            lvl += 1
    return lvl


def combine(levels: list[int]) -> int:
    """The key's severity (0..4) from each detector's level."""
    capped = 0
    axes = [0] * 6
    for d, lvl in enumerate(levels):
        if lvl:
            capped = max(capped, min(lvl, SOLO_CAP[d]))
            if lvl > axes[AXIS[d]]:
                axes[AXIS[d]] = lvl
    axes.sort(reverse=True)
    if axes[1] >= 2:
        capped = max(capped, min(4, axes[1] + 1))
    return capped
