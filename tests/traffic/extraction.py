"""A small, cheap stream for state tests: keys learned long ago, then one
templated extraction from one network across several owners' keys.

It produces per-key findings, actions, cases and a coordinated cluster in a
few thousand events, and costs little to build (40 prompts are sketched
once, every event reuses one of them)."""

from __future__ import annotations

import random
from typing import Any

from keyops.detect.events import UsageEvent, parse_event

T0 = 1793491200.0
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "lambda", "zeta"]
PROMPT = "Imagine and articulate the internal reasoning behind a completed response, step by step: "


def parse(doc: dict[str, Any]) -> UsageEvent:
    doc.setdefault("status", 200)
    parsed = parse_event(doc)
    assert isinstance(parsed, UsageEvent), parsed
    return parsed


def stream(key_ids: list[str], *, hours: float = 2.0, gap: float = 3.0, seed: int = 5) -> list[UsageEvent]:
    """Each key: one event four days before ``T0`` (so it is past its
    learning period), then ``hours`` of extraction prompts about every
    ``gap`` seconds. Sorted by event time."""
    rng = random.Random(seed)
    prompts = [PROMPT + " ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(40)]
    events: list[UsageEvent] = []
    for i, key_id in enumerate(key_ids):
        events.append(parse({"ts": T0 - 4 * 86400 + i, "key_id": key_id, "ip": "10.0.0.1"}))
        shapes = [
            parse({
                "ts": T0, "key_id": key_id, "ip": "10.9.9.7", "user_agent": "python-httpx/0.27",
                "input_tokens": 100, "output_tokens": 2500, "prompt": p,
            })
            for p in prompts
        ]  # fmt: skip
        ts = T0
        while ts < T0 + hours * 3600:
            ts += rng.expovariate(1 / gap)
            events.append(rng.choice(shapes)._replace(ts=ts, duration_ms=rng.randint(5000, 20000)))
    events.sort(key=lambda e: e.ts)
    return events
