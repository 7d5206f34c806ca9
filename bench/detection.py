"""Detection quality on the labeled traffic generator, at bench scale.

    python bench/detection.py [--seed 7] [--days 7] [--scale 1.0]

Prints, per scenario: keys, keys acted on (rotate/suspend/revoke) over keys
attacked, benign keys acted on, and for attacks the events and the event
time from the attack's start to the first action. Then a side measurement
of the two near-duplicate signals (template skeleton vs MinHash LSH) on
labeled prompt pairs. Targets (issue 5): every attack detected, zero benign
keys suspended or revoked, the coordinated cluster with >= 90% of members.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyops.detect.sketches import sketch_prompt
from tests.traffic.generator import (
    BATCH_INSTRUCTION,
    GENERIC_TEMPLATES,
    POPULAR_SYSTEM_PROMPT,
    STRONG_TEMPLATES,
    _vocabulary,
    generate,
)
from tests.traffic.harness import run

ACTED = ("rotate", "suspend", "revoke")


def _fmt_delay(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def scenarios(seed: int, days: int, scale: float) -> bool:
    t0 = time.perf_counter()
    traffic = generate(seed=seed, days=days, scale=scale)
    t1 = time.perf_counter()
    outcome = run(traffic)
    t2 = time.perf_counter()
    print(
        f"traffic: seed {seed}, {days} days, scale {scale}: {len(traffic.keys)} keys, {outcome.events} events "
        f"(generated in {t1 - t0:.1f}s, judged in {t2 - t1:.1f}s)\n"
    )
    per_key_events: dict[str, list[float]] = {}
    for event in traffic.events:
        per_key_events.setdefault(event["_key"], []).append(event["ts"])
    header = (
        f"{'scenario':34s} {'keys':>4s} {'detected':>9s} {'benign acted':>12s} {'notified':>8s}  "
        "time to action (events)"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for name, keys in sorted(traffic.by_scenario().items()):
        attacked = [k for k in keys if k.attacked]
        benign = [k for k in keys if not k.attacked]
        detected = [k for k in attacked if outcome.strongest(k.name) in ACTED]
        benign_acted = [k for k in benign if outcome.strongest(k.name) in ACTED]
        benign_hard = [k for k in benign if outcome.strongest(k.name) in ("suspend", "revoke")]
        notified = [k for k in keys if outcome.strongest(k.name) == "notify"]
        delays = []
        counts = []
        for k in detected:
            at = outcome.first_action_at[k.name]
            start = k.attack_start or at
            delays.append(at - start)
            counts.append(sum(1 for ts in per_key_events[k.name] if start <= ts < at))
        timing = (
            f"median {_fmt_delay(statistics.median(delays))} ({statistics.median(counts):.0f} events), "
            f"max {_fmt_delay(max(delays))} ({max(counts)} events)"
            if delays
            else "-"
        )
        det = f"{len(detected)}/{len(attacked)}" if attacked else "-"
        print(f"{name:34s} {len(keys):4d} {det:>9s} {len(benign_acted):>12d} {len(notified):>8d}  {timing}")
        if attacked:
            need = 0.9 if name == "attack-coordinated" else 1.0
            ok = ok and len(detected) >= need * len(attacked)
        ok = ok and not benign_hard
    all_benign = [k for k in traffic.keys if not k.attacked]
    hard = [k for k in all_benign if outcome.strongest(k.name) in ("suspend", "revoke")]
    rotated = [k for k in all_benign if outcome.strongest(k.name) == "rotate"]
    print(
        f"\nbenign keys: {len(all_benign)}; suspended or revoked: {len(hard)}; rotated: {len(rotated)}; "
        f"findings: {len(outcome.output.findings)}; actions: {len(outcome.output.actions)}"
    )
    print(f"targets met: {'yes' if ok else 'NO'}")
    return ok


def _share(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return bool(set(a[4:]) & set(b[4:]))


def near_duplicates(seed: int) -> None:
    """Which signal says "same template" for which kind of pair."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(low, high)))

    kinds: dict[str, Callable[[], str]] = {
        "extraction template, short fill": lambda: rng.choice(STRONG_TEMPLATES[:2] + GENERIC_TEMPLATES).format(
            q=words(8, 15)
        ),
        "shared instruction, long content": lambda: BATCH_INSTRUCTION.format(q=words(40, 90)),
        "popular system prompt, short fill": lambda: POPULAR_SYSTEM_PROMPT.format(q=words(6, 20)),
        "unrelated diverse prompts": lambda: words(15, 60),
    }
    print("\nnear-duplicate signals on 400 prompt pairs of each kind (share of pairs flagged):")
    print(f"{'pair kind':36s} {'skeleton':>9s} {'minhash-lsh':>12s}")
    for label, make in kinds.items():
        skel = lsh = 0
        pairs = 400
        same_template = label.startswith("extraction")
        for _ in range(pairs):
            if same_template:
                template = rng.choice(STRONG_TEMPLATES[:2] + GENERIC_TEMPLATES)
                a = sketch_prompt(template.format(q=words(8, 15)))
                b = sketch_prompt(template.format(q=words(8, 15)))
            else:
                a, b = sketch_prompt(make()), sketch_prompt(make())
            skel += a[3] == b[3]
            lsh += _share(a, b)
        print(f"{label:36s} {skel / pairs:9.1%} {lsh / pairs:12.1%}")
    print(
        "reading: the skeleton flags every shared opening (a batch job's instruction, a popular system prompt);\n"
        "MinHash LSH flags whole prompts that are nearly the same (short fills), and almost never unrelated text.\n"
        "The templated detector uses both, each against its own expected share per profile."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    ok = scenarios(args.seed, args.days, args.scale)
    near_duplicates(args.seed)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
