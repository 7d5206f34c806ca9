"""Replay throughput of the detection engine on one core, and memory per key.

    python bench/engine.py [--events 200000] [--keys 2000]

Writes two JSON-lines files of usage events (the same events with ~600
character prompts, and without prompts), then for each file measures in the
same process:

* parse only: ``orjson.loads`` of every line (the floor any replay pays);
* replay: ``orjson.loads`` + ``parse_event`` (validation, sketching) + the
  engine (event-time release, windows, detectors, coordination), key
  resolution from a dictionary (the inventory lookup is cached per key).

Rates are events per second of the process's CPU time on its one core; the
wall-clock rates are printed beside them. On a quiet machine the two agree;
on this shared two-core machine other processes' load lowers the wall-clock
rate without saying anything about the engine.

Then memory per active key: ``tracemalloc`` of the engine's state after
``--keys`` keys have each sent enough prompts to fill their bounded rings.
Targets (issue 5): >= 20,000 events/s with prompts, >= 100,000 without,
<= 16 KB per active key.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyops.detect.engine import Engine, Output
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.model import KeyMeta
from tests.traffic.harness import builtin_configs

T0 = 1793491200.0
TEMPLATES = (
    "Imagine and articulate the internal reasoning behind a completed response to this question, step by step: ",
    "Summarise the following support ticket in three bullet points and classify its urgency: ",
    "",
    "",
)


def make_files(directory: Path, n_events: int, n_keys: int, seed: int) -> tuple[Path, Path, list[str]]:
    rng = random.Random(seed)
    words = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(5000)]
    key_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n_keys)]
    with_prompts = directory / "with-prompts.jsonl"
    without = directory / "without-prompts.jsonl"
    rate = n_events / 86400  # one day of event time
    ts = T0
    # Key activity is skewed, as in real inventories: a few busy keys, many quiet ones.
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(n_keys)]
    picks = rng.choices(range(n_keys), weights=weights, k=n_events)
    with with_prompts.open("wb") as a, without.open("wb") as b:
        for k in picks:
            ts += rng.expovariate(rate)
            doc = {
                "ts": round(ts, 3),
                "key_id": key_ids[k],
                "ip": f"10.{k % 200}.{rng.randrange(3)}.{rng.randrange(250)}",
                "endpoint": "/v1/messages",
                "status": 200,
                "duration_ms": rng.randint(300, 20000),
                "input_tokens": rng.randint(50, 2000),
                "output_tokens": rng.randint(20, 2000),
                "user_agent": f"client/{k % 7}",
            }
            b.write(orjson.dumps(doc) + b"\n")
            prompt = rng.choice(TEMPLATES)
            while len(prompt) < 600:
                prompt += rng.choice(words) + " "
            doc["prompt"] = prompt[:600]
            a.write(orjson.dumps(doc) + b"\n")
    return with_prompts, without, key_ids


def parse_only(path: Path) -> tuple[int, float, float]:
    """Events, wall seconds and CPU seconds of parsing the file."""
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return n, time.perf_counter() - start, time.process_time() - cpu


def replay(path: Path, metas: dict[str, KeyMeta]) -> tuple[int, float, float, Engine, Output]:
    """Events, wall seconds and CPU seconds of replaying the file, the engine, its output."""
    cfg = builtin_configs()["interactive"]
    engine = Engine(lateness=5.0)
    out = Output()
    resolved = {"id:" + k: m for k, m in metas.items()}
    loads = orjson.loads
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    push = engine.push
    with path.open("rb") as f:
        for i, line in enumerate(f):
            event = parse_event(loads(line))
            if not isinstance(event, UsageEvent):
                raise SystemExit(f"bench file line {i + 1}: {event}")
            push(event, resolved[event.key_ref], cfg)
            if i % 256 == 0:
                engine.release(out)
            n += 1
    engine.flush(out)
    return n, time.perf_counter() - start, time.process_time() - cpu, engine, out


def memory_per_key(n_keys: int, seed: int) -> float:
    """Bytes of engine state per active key whose rings are full."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(5000)]
    cfg = builtin_configs()["interactive"]
    metas = [KeyMeta(str(uuid.UUID(int=i + 1)), f"bench/k{i}", f"owner{i}", "interactive") for i in range(n_keys)]
    events = []
    for j in range(40):  # 40 prompts per key: rings (24) full, several networks and clients
        for i, meta in enumerate(metas):
            doc = {
                "ts": T0 + j * 20.0 + i * 0.001,
                "key_id": meta.key_id,
                "ip": f"10.{j % 16}.{i % 250}.{j}",
                "duration_ms": 15000,
                "input_tokens": 300,
                "output_tokens": 500,
                "prompt": " ".join(rng.choice(words) for _ in range(80)),
                "user_agent": f"client-{j % 8}/1.{i % 5}",
            }
            parsed = parse_event(doc)
            assert isinstance(parsed, UsageEvent)
            events.append((parsed, meta))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = Engine(lateness=0.0)
    out = Output()
    for event, meta in events:
        engine.push(event, meta, cfg)
        engine.release(out)
    del events
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(engine.keys) == n_keys
    return (after - before) / n_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    print(f"python {sys.version.split()[0]}, pinned to one core; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        with_prompts, without, key_ids = make_files(Path(tmp), args.events, args.keys, args.seed)
        metas = {k: KeyMeta(k, f"bench/k{i}", f"owner{i % 500}", "interactive") for i, k in enumerate(key_ids)}
        for label, path, target in (
            ("with ~600-char prompts", with_prompts, 20_000),
            ("without prompts", without, 100_000),
        ):
            n, parse_s, parse_cpu = parse_only(path)
            n2, replay_s, replay_cpu, engine, out = replay(path, metas)
            rate = n2 / replay_cpu
            print(
                f"{label:24s} {n} events: parse only (orjson) {n / parse_cpu:>10,.0f} ev/s; "
                f"replay {rate:>9,.0f} ev/s (target {target:,}: {'met' if rate >= target else 'NOT met'}); "
                f"wall clock: parse {n / parse_s:,.0f}, replay {n2 / replay_s:,.0f} ev/s; "
                f"{len(engine.keys)} keys, {len(out.findings)} findings"
            )
    per_key = memory_per_key(min(args.keys, 5000), args.seed)
    verdict = "met" if per_key <= 16384 else "NOT met"
    print(f"memory per active key (full rings): {per_key / 1024:.1f} KB (target 16 KB: {verdict})")


if __name__ == "__main__":
    main()
