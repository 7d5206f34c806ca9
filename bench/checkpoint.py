"""Checkpoint size and speed: bytes per key, encode and restore time.

    python bench/checkpoint.py [--keys 2000]

Two populations of ``--keys`` keys each, built through the real engine:

* busy: 40 prompts per key (the bench/engine.py memory case): the prompt
  rings (24 prompts) full, several networks and clients, evidence samples;
* quiet: a few requests per key without prompts, idle for two hours (the
  per-minute state dropped): what most keys of a large inventory look like.

For each: the snapshot's bytes per key (``keyops.detect.snapshot``, zlib
level 6), the time to encode it (what the daemon holds the engine's lock
for), and the time to restore it into a fresh engine (start-up).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keyops.detect.engine import Engine, Output
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.model import KeyMeta
from keyops.detect.snapshot import encode_engine, restore_engine
from tests.traffic.harness import builtin_configs

T0 = 1793491200.0


def _engine(n_keys: int, seed: int, busy: bool) -> Engine:
    rng = random.Random(seed)
    words = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(5000)]
    cfg = builtin_configs()["interactive"]
    metas = [KeyMeta(str(uuid.UUID(int=i + 1)), f"bench/k{i}", f"owner{i}", "interactive") for i in range(n_keys)]
    engine = Engine(lateness=0.0)
    out = Output()
    for j in range(40 if busy else 4):
        for i, meta in enumerate(metas):
            doc = {
                "ts": T0 + j * 20.0 + i * 0.001,
                "key_id": meta.key_id,
                "ip": f"10.{j % 16}.{i % 250}.{j}" if busy else f"10.1.{i % 250}.7",
                "duration_ms": 15000,
                "input_tokens": 300,
                "output_tokens": 500,
                "user_agent": f"client-{j % 8}/1.{i % 5}" if busy else "backend/2.1",
            }
            if busy:
                doc["prompt"] = " ".join(rng.choice(words) for _ in range(80))
            parsed = parse_event(doc)
            assert isinstance(parsed, UsageEvent)
            engine.push(parsed, meta, cfg)
            engine.release(out)
    if not busy:  # two quiet hours: windows closed, per-minute state dropped
        engine.advance(T0 + 2 * 3600, out)
        quiet = parse_event({"ts": T0 + 2 * 3600 + 60, "key_id": metas[0].key_id, "ip": "10.1.0.7"})
        assert isinstance(quiet, UsageEvent)
        engine.push(quiet, metas[0], cfg)
        engine.release(out)
    engine.flush(out)
    return engine


def measure(name: str, engine: Engine, rounds: int = 3) -> None:
    n = len(engine.keys)
    encode, restore = [], []
    data = b""
    for _ in range(rounds):
        started = time.perf_counter()
        data = encode_engine(engine, position=1)
        encode.append(time.perf_counter() - started)
        fresh = Engine()
        started = time.perf_counter()
        restore_engine(fresh, data)
        restore.append(time.perf_counter() - started)
        assert len(fresh.keys) == n
    print(
        f"{name:6} {n} keys: {len(data):,} bytes = {len(data) / n:,.0f} bytes per key; "
        f"encode {min(encode) * 1000:.0f} ms ({min(encode) / n * 1e6:.0f} us/key), "
        f"restore {min(restore) * 1000:.0f} ms ({min(restore) / n * 1e6:.0f} us/key) (best of {rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    measure("busy", _engine(args.keys, args.seed, busy=True))
    measure("quiet", _engine(args.keys, args.seed, busy=False))


if __name__ == "__main__":
    main()
