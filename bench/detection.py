"""Detection quality on the scenario family (tests/traffic/family.py).

    python bench/detection.py --draws 20 [--seed S] [--heldout] [--scale X] [--jobs 2]

Each draw is a different random world (keys, rates, shapes, languages,
attack variants) run through tests/traffic/harness.run. Prints a line per
draw, then the mean and the worst draw of each figure, and whether the
targets hold (exit 0) or not (exit 1). An action before a key's
attack_start counts as a false action on that key, not a detection.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.traffic.family import ATTACK_KINDS, draw
from tests.traffic.harness import run
from tests.traffic.scenes import ACTED, FamilyKey


@dataclass
class DrawResult:
    index: int
    keys: int
    events: int
    benign_keys: int
    benign_days: float
    benign_acted: int  # benign keys with a rotate/suspend/revoke, plus attack keys acted on before their start
    false_actions: int
    notifications: int  # on benign keys
    attacked: dict[str, int] = field(default_factory=dict)  # class -> keys
    caught: dict[str, int] = field(default_factory=dict)
    notified: dict[str, int] = field(default_factory=dict)  # attack keys with a notification (own or cluster)
    delays: dict[str, list[float]] = field(default_factory=dict)  # minutes, attack start -> first action
    leaked_rotate: list[float] = field(default_factory=list)  # minutes to a rotate, inf when none


def _notifications(out: object) -> list[tuple[str | None, str | None, float]]:
    records = getattr(out, "notifications", None)
    if records is not None:
        return [(r.key_name, r.cluster_id, r.at) for r in records]
    return [(a.key_name, None, a.at) for a in out.actions if a.action == "notify"]  # type: ignore[attr-defined]


def judge(job: tuple[int, int, bool, float]) -> DrawResult:
    seed, index, heldout, scale = job
    traffic = draw(seed, index, heldout=heldout, scale=scale)
    outcome = run(traffic)
    out = outcome.output
    keys: list[FamilyKey] = traffic.keys  # type: ignore[assignment]
    acts: dict[str, list[tuple[float, str]]] = {}
    for a in out.actions:
        if a.action in ACTED:
            acts.setdefault(a.key_name, []).append((a.at, a.action))
    cluster_of: dict[str, str] = {}
    for f in out.findings:
        cid = getattr(f, "cluster_id", None)
        if cid:
            cluster_of[f.key_name] = cid
    noted_keys: set[str] = set()
    noted_clusters: set[str] = set()
    benign_names = {k.name for k in keys if k.kind == "benign"}
    benign_notes = 0
    for name, cid, _at in _notifications(out):
        if name is not None:
            noted_keys.add(name)
            benign_notes += name in benign_names
        elif cid is not None:
            noted_clusters.add(cid)
            benign_notes += sum(1 for k, c in cluster_of.items() if c == cid and k in benign_names)
    r = DrawResult(
        index=index,
        keys=len(keys),
        events=outcome.events,
        benign_keys=len(benign_names),
        benign_days=sum(k.days for k in keys if k.kind == "benign"),
        benign_acted=0,
        false_actions=0,
        notifications=benign_notes,
    )
    for k in keys:
        mine = sorted(acts.get(k.name, []))
        if k.kind == "benign":
            r.false_actions += len(mine)
            r.benign_acted += bool(mine)
            continue
        start = k.attack_start if k.attack_start is not None else float("inf")
        before = [m for m in mine if m[0] < start]
        after = [m for m in mine if m[0] >= start]
        r.false_actions += len(before)
        r.attacked[k.kind] = r.attacked.get(k.kind, 0) + 1
        if after:
            r.caught[k.kind] = r.caught.get(k.kind, 0) + 1
            r.delays.setdefault(k.kind, []).append((after[0][0] - start) / 60.0)
        if k.name in noted_keys or cluster_of.get(k.name) in noted_clusters:
            r.notified[k.kind] = r.notified.get(k.kind, 0) + 1
        if k.kind == "leaked":
            rotates = [m[0] for m in after if m[1] == "rotate"]
            r.leaked_rotate.append((rotates[0] - start) / 60.0 if rotates else float("inf"))
    return r


def _rate(num: float, den: float, per: float) -> float:
    return per * num / den if den else 0.0


def _fmt_min(values: list[float]) -> str:
    finite = [v for v in values if v != float("inf")]
    if not values:
        return "-"
    text = f"{statistics.median(values):.0f}" if statistics.median(values) != float("inf") else "never"
    return f"{text} min (n={len(values)}, {len(values) - len(finite)} never)"


def report(results: list[DrawResult]) -> bool:
    print(
        f"{'draw':>4s} {'keys':>5s} {'events':>7s} {'benign acted':>12s} {'false/1k kd':>11s} "
        f"{'notif/100 kd':>12s}  caught per class"
    )
    for r in results:
        caught = " ".join(f"{c}:{r.caught.get(c, 0)}/{r.attacked.get(c, 0)}" for c in ATTACK_KINDS)
        print(
            f"{r.index:4d} {r.keys:5d} {r.events:7d} {r.benign_acted:>6d}/{r.benign_keys:<5d} "
            f"{_rate(r.false_actions, r.benign_days, 1000):11.1f} {_rate(r.notifications, r.benign_days, 100):12.1f}  "
            f"{caught}"
        )
    n = len(results)
    keys = sum(r.keys for r in results)
    bkeys = sum(r.benign_keys for r in results)
    bdays = sum(r.benign_days for r in results)
    print(
        f"\nfrom {n} draws: {keys} keys ({bkeys} benign, {bdays:.0f} benign key-days), "
        f"{sum(r.events for r in results)} events"
    )

    def mean_worst(label: str, values: list[float], worst: float) -> None:
        print(f"  {label:44s} mean {statistics.mean(values):8.2f}   worst {worst:8.2f}")

    acted = [float(r.benign_acted) for r in results]
    false = [_rate(r.false_actions, r.benign_days, 1000) for r in results]
    notes = [_rate(r.notifications, r.benign_days, 100) for r in results]
    mean_worst("benign keys acted on", acted, max(acted))
    mean_worst("false actions per 1,000 benign key-days", false, max(false))
    mean_worst("notifications per 100 benign key-days", notes, max(notes))
    ok = True
    for cls in ATTACK_KINDS:
        shares = [r.caught.get(cls, 0) / r.attacked[cls] for r in results if r.attacked.get(cls)]
        delays = [d for r in results for d in r.delays.get(cls, [])]
        total = sum(r.attacked.get(cls, 0) for r in results)
        caught = sum(r.caught.get(cls, 0) for r in results)
        notified = sum(r.notified.get(cls, 0) for r in results)
        med = f"{statistics.median(delays):.0f} min" if delays else "-"
        if shares:
            print(
                f"  detection {cls:34s} mean {statistics.mean(shares):8.1%}   worst {min(shares):8.1%}   "
                f"({caught}/{total} keys, median time to action {med}, notified {notified}/{total})"
            )
        if cls == "cluster":
            ok = ok and bool(shares) and min(shares) >= 0.9
        else:
            ok = ok and caught == total and bool(delays) and statistics.median(delays) <= 60
        ok = ok and notified == total
    leaked = [v for r in results for v in r.leaked_rotate]
    print(f"  leaked key: attack start -> rotate, median {_fmt_min(leaked)}")
    ok = ok and bool(leaked) and max(leaked) <= 15
    clean = sum(1 for r in results if r.benign_acted == 0)
    overall_false = _rate(sum(r.false_actions for r in results), bdays, 1000)
    overall_notes = _rate(sum(r.notifications for r in results), bdays, 100)
    need = max(1, n - (n // 20))
    targets = {
        f"no benign key acted on in >= {need} of {n} draws ({clean})": clean >= need,
        f"<= 1 false action per 1,000 benign key-days overall ({overall_false:.2f})": overall_false <= 1.0,
        f"<= 1 notification per 100 benign key-days overall ({overall_notes:.2f})": overall_notes <= 1.0,
        "every non-cluster attack key acted on after start, median <= 60 min; >= 90% of cluster keys; "
        "leaked key rotated within 15 min; every attack key notified": ok,
    }
    print("\ntargets:")
    for label, held in targets.items():
        print(f"  [{'ok' if held else 'NO'}] {label}")
    met = all(targets.values())
    print(f"targets met: {'yes' if met else 'NO'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--heldout", action="store_true", help="the held-out wording (run once, at the end)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    jobs = [(args.seed, i, args.heldout, args.scale) for i in range(args.draws)]
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            results = pool.map(judge, jobs, chunksize=1)
    else:
        results = [judge(j) for j in jobs]
    print(f"scenario family, seed {args.seed}, {'held-out' if args.heldout else 'family'} wording, scale {args.scale}")
    sys.exit(0 if report(results) else 1)


if __name__ == "__main__":
    main()
