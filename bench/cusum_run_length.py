"""How often the reasoning detector's sequential test fires on a key that is
*not* extracting: its in-control run length, simulated.

    python bench/cusum_run_length.py [--share 0.05] [--per-window 1] [--trials 40] [--cap 400000]

Each trial feeds Bernoulli(share) elicitation prompts, ``--per-window`` per
five-minute window, through the same score update as
``keyops.detect.reasoning.judge`` (its ``H``, ``STEP_MAX`` and the built-in
interactive profile's shares) until the score reaches ``H`` or ``--cap``
prompts have passed. Prints the median prompts to a false alarm (or ">cap"),
and the detection delay for attack shares, in prompts.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyops.detect import reasoning
from tests.traffic.harness import builtin_configs


def run_length(share: float, per_window: int, cap: int, rng: random.Random) -> int | None:
    p0, p1 = reasoning.shares(builtin_configs()["interactive"])
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    score, n = 0.0, 0
    while n < cap:
        k = sum(rng.random() < share for _ in range(per_window))
        score = max(score + min(k * up + (per_window - k) * down, reasoning.STEP_MAX), 0.0)
        n += per_window
        if score >= reasoning.H:
            return n
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--per-window", type=int, default=1)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--cap", type=int, default=400_000)
    args = ap.parse_args()
    rng = random.Random(1)
    p0, p1 = reasoning.shares(builtin_configs()["interactive"])
    print(f"H={reasoning.H:g} step_max={reasoning.STEP_MAX:g} p0={p0:g} p1={p1:g}, {args.per_window} prompt(s)/window")
    lengths = [run_length(args.share, args.per_window, args.cap, rng) for _ in range(args.trials)]
    fired = sorted(x for x in lengths if x is not None)
    med = statistics.median([x if x is not None else math.inf for x in lengths])
    print(
        f"share {args.share:g}: {len(fired)}/{args.trials} trials fired within {args.cap:,} prompts; "
        f"median run length {'>' + format(args.cap, ',') if med == math.inf else format(int(med), ',')} prompts"
    )
    for attack in (0.1, 0.25, 0.5):
        delays = [run_length(attack, args.per_window, 100_000, rng) for _ in range(200)]
        done = [d for d in delays if d is not None]
        print(f"attack share {attack:g}: median {statistics.median(done):.0f} prompts to critical ({len(done)}/200)")


if __name__ == "__main__":
    main()
