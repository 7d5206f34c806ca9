"""From accumulated evidence to a verdict, and from a verdict to an action.

Rotating a key answers one question: does someone *other than its owner*
hold it? Suspending a key answers another: is its owner using it to extract
the model's capabilities? The engine keeps the two apart:

* **Origin** (the ``network`` detector): a new network together with a new
  client while the key's usual origin is still active, or together with a
  jump in volume or spend: the shape of a leaked key. Its verdict answers
  with the ladder's ``leak`` step (``rotate`` in the built-in profiles), and
  fast: two clear windows are enough. An office that moves and upgrades its
  SDK on the same day moves *all* its traffic, so the old origin goes quiet
  and novelty alone stays weak evidence that never acts.
* **Extraction** (every other detector): evidence per detector is a leaky
  integrator (half-life ``HALF_LIFE``; one window adds at most 1, a
  coordination round 4.5); the levels need 1, 2.5, 5 and 8. Detectors are
  grouped into *axes* (load, automation, intent, output, coordination). One
  axis alone is capped (``SOLO_CAP``): a demo-day burst is only load, a
  templated product only automation, and neither can reach ``high``.
  Strong reasoning-trace elicitation and a confirmed cluster are themselves
  strong evidence and may go to ``critical`` alone; otherwise ``high`` needs
  two independent axes at ``medium`` and ``critical`` two at ``high`` or
  three at ``medium``.
* While a key is *learning* (its profile's ``learning_period``) its own
  history cannot be the reference yet, and the profile's prior is a guess
  about a product nobody has seen: the character detectors (templated,
  harvesting) are then recorded at ``low`` at most and count for nothing,
  so a product whose normal is templated or long-output is learned, not
  punished, in its first days. Reasoning elicitation, hard limits and
  clusters count from the first request.

The profile's ladder maps the extraction severity to an action (built-in:
``high`` opens a case that people are told about, ``critical`` suspends); an
action is taken only when it ranks above what was already done to the key.
"""

from __future__ import annotations

from keyops.detect.config import LEVEL_THRESHOLDS
from keyops.detect.state import COORDINATED, DETECTORS, HARVESTING, NETWORK, TEMPLATED

# volume, concurrency, network, templated, reasoning, harvesting, coordinated
SOLO_CAP = (2, 2, 0, 1, 4, 2, 4)
AXIS = (0, 0, -1, 1, 2, 3, 4)  # network is origin, judged on its own (-1)
AXES = 5
MIN_FINDING_LEVEL = 2  # findings are recorded from "medium" up
NOTIFY_LEVEL = 3  # a case reaches people from "high" up
#: Origin evidence that decides a leak: two windows in which most of the
#: traffic came from a new network and client beside the usual origin.
LEAK_EVIDENCE = 1.7
_LEARNING_CAP = {TEMPLATED: 1, HARVESTING: 1}
LEARNING_CAPPED = frozenset(_LEARNING_CAP)
#: Their accumulated evidence while learning stays just below "medium".
LEARNING_EVIDENCE_CAP = LEVEL_THRESHOLDS[1] - 0.01

assert len(SOLO_CAP) == len(AXIS) == len(DETECTORS)


def level(evidence: float) -> int:
    lvl = 0
    for threshold in LEVEL_THRESHOLDS:
        if evidence >= threshold:
            lvl += 1
    return lvl


def effective_levels(levels: list[int], learned: bool) -> list[int]:
    """Levels as they count for a decision (character detectors are capped
    while the key learns)."""
    if learned:
        return levels
    out = list(levels)
    for d, cap in _LEARNING_CAP.items():
        if out[d] > cap:
            out[d] = cap
    return out


def combine(levels: list[int], learned: bool = True, *, without_cluster: bool = False) -> int:
    """The key's extraction severity (0..4) from each detector's level."""
    levels = effective_levels(levels, learned)
    capped = 0
    axes = [0] * AXES
    for d, lvl in enumerate(levels):
        if not lvl or d == NETWORK or (without_cluster and d == COORDINATED):
            continue
        capped = max(capped, min(lvl, SOLO_CAP[d]))
        if not learned and d in _LEARNING_CAP:
            continue
        a = AXIS[d]
        if lvl > axes[a]:
            axes[a] = lvl
    axes.sort(reverse=True)
    if axes[1] >= 2:
        capped = max(capped, min(4, axes[1] + 1))
    if axes[2] >= 2:
        capped = 4
    return capped


def is_leak(origin_evidence: float) -> bool:
    return origin_evidence >= LEAK_EVIDENCE
