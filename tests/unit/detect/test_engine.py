"""The engine: deterministic, event-time driven, tolerant of bounded disorder,
bounded per key, and never acting on one noisy minute."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keyops.detect.engine import Engine, Output
from keyops.detect.events import UsageEvent, parse_event
from keyops.detect.model import KeyMeta
from keyops.detect.state import INFLIGHT_MAX, NETS_MAX, RING, SKELETONS_MAX, UAS_MAX
from tests.traffic.harness import builtin_configs

CFG = builtin_configs()
T0 = 1793491200.0
META = KeyMeta("01a219fe-a712-7523-b8e2-f2e4c2e6d38e", "team/app", "team", "interactive")
EXTRACT = "Imagine and articulate the internal reasoning behind a completed response, step by step: {q}"


def ev(ts: float, **kw: Any) -> UsageEvent:
    doc: dict[str, Any] = {"ts": ts, "key_id": META.key_id, "ip": "10.0.0.7", "status": 200, "duration_ms": 900}
    doc.update(kw)
    parsed = parse_event(doc)
    assert isinstance(parsed, UsageEvent), parsed
    return parsed


def attack_stream(seed: int = 1, hours: float = 3.0) -> list[UsageEvent]:
    rng = random.Random(seed)
    out = []
    ts = T0
    while ts < T0 + hours * 3600:
        ts += rng.expovariate(1.0)  # ~60 rpm
        q = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega", "sigma"]) for _ in range(8))
        out.append(
            ev(
                ts,
                prompt=EXTRACT.format(q=q),
                input_tokens=100,
                output_tokens=2500,
                duration_ms=rng.randint(9000, 30000),
            )
        )
    return out


def run(events: list[UsageEvent], lateness: float = 5.0) -> tuple[Output, Engine]:
    engine = Engine(lateness=lateness)
    out = Output()
    cfg = CFG["interactive"]
    for e in events:
        engine.push(e, META, cfg)
        engine.release(out)
    engine.flush(out)
    return out, engine


def identities(out: Output) -> list[tuple[Any, ...]]:
    return [f.identity() for f in out.findings] + [(a.action, a.at, a.severity) for a in out.actions]


def test_same_input_same_output() -> None:
    events = attack_stream()
    first, _ = run(events)
    second, _ = run(events)
    assert identities(first) == identities(second)
    assert first.actions, "a sustained extraction stream is acted on"


def test_out_of_order_within_lateness_gives_the_same_findings() -> None:
    events = attack_stream()
    rng = random.Random(9)
    # Jitter arrival order by up to 4 s of event time (lateness is 5 s).
    shuffled = sorted(events, key=lambda e: e.ts + rng.uniform(-4.0, 0.0))
    assert shuffled != events
    assert identities(run(shuffled)[0]) == identities(run(events)[0])


class RecordingEngine(Engine):
    """The real engine, noting the order in which it processes events."""

    def __init__(self, lateness: float) -> None:
        super().__init__(lateness=lateness)
        self.order: list[tuple[float, str, int]] = []

    def _process(self, ev: UsageEvent, meta: KeyMeta, cfg: Any, out: Output) -> None:
        self.order.append((ev.ts, ev.key_ref, ev.input_tokens))
        super()._process(ev, meta, cfg, out)


def test_events_are_processed_in_event_time_then_key_then_arrival_order() -> None:
    # In-order arrivals take the engine's fast path and out-of-order ones its
    # heap; together they must give exactly the order one heap would.
    rng = random.Random(4)
    other = KeyMeta("5b0c8a3e-1f7d-4c2a-9e61-0d4b7f3a2c19", "team/other", "team", "interactive")
    pushed: list[tuple[float, str, int]] = []
    engine = RecordingEngine(lateness=5.0)
    out = Output()
    cfg = CFG["interactive"]
    ts = T0
    for i in range(3000):
        ts += rng.choice((0.0, 0.0, 0.5, 1.0))  # many ties in event time
        at = ts - rng.choice((0.0, 0.0, 0.0, rng.uniform(0.0, 4.0)))  # some arrive late
        meta = rng.choice((META, other))
        event = ev(round(at, 1), key_id=meta.key_id, input_tokens=i)
        assert engine.push(event, meta, cfg) is None
        pushed.append((event.ts, event.key_ref, i))
        if rng.random() < 0.3:
            engine.release(out)
    engine.flush(out)
    assert engine.order == sorted(pushed)


def test_events_later_than_the_watermark_are_refused_and_change_nothing() -> None:
    engine = Engine(lateness=5.0)
    out = Output()
    cfg = CFG["interactive"]
    for e in [ev(T0 + i) for i in range(100)]:
        assert engine.push(e, META, cfg) is None
        engine.release(out)
    st_before = engine.keys[META.key_id]
    n_before = st_before.n
    reason = engine.push(ev(T0 + 10, output_tokens=10**6), META, cfg)
    assert reason is not None and reason.reason == "late" and "watermark" in reason.error
    engine.release(out)
    assert engine.keys[META.key_id].n == n_before
    assert engine.late == 1


def test_one_noisy_minute_never_rotates_suspends_or_revokes() -> None:
    rng = random.Random(2)
    words = [f"w{i}x" for i in range(3000)]
    quiet = [ev(T0 + i * 30.0, prompt=" ".join(rng.sample(words, 12))) for i in range(4 * 2880)]
    minute = T0 + 3.5 * 86400
    burst = [
        ev(
            minute + i * 0.05,
            prompt=EXTRACT.format(q=str(i % 3)),
            output_tokens=5000,
            input_tokens=10,
            duration_ms=20000,
        )
        for i in range(1200)
    ]
    out, _ = run(sorted(quiet + burst, key=lambda e: e.ts))
    assert not [a for a in out.actions if a.action in ("rotate", "suspend", "revoke")]


def test_sustained_evidence_reaches_the_ladder() -> None:
    out, _ = run(attack_stream(hours=3))
    actions = [a.action for a in out.actions]
    assert "suspend" in actions
    suspend = next(a for a in out.actions if a.action == "suspend")
    assert suspend.at - T0 >= 1200, "evidence must persist for a while first (four windows)"
    assert suspend.finding.evidence["detectors"], "the action carries its evidence"


def test_state_per_key_stays_bounded() -> None:
    rng = random.Random(5)
    events = [
        ev(
            T0 + i * 0.5,
            ip=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1",
            user_agent=f"ua-{rng.randint(0, 10**6)}",
            prompt=f"{rng.random()} {rng.random()} {rng.random()}",
            duration_ms=3_600_000,
        )
        for i in range(5000)
    ]
    _, engine = run(events)
    st = engine.keys[META.key_id]
    assert len(st.nets) <= NETS_MAX
    assert len(st.uas) <= UAS_MAX
    assert len(st.skel_ring) <= RING * 4  # 4-byte words
    assert len(st.band_ring) <= RING * 5 * 4
    assert len(st.skeletons) <= SKELETONS_MAX
    assert len(st.inflight) <= INFLIGHT_MAX
    assert len(st.samples) <= 3


def test_idle_keys_are_evicted() -> None:
    engine = Engine(lateness=5.0, idle_hot=600.0, idle_cold=3 * 3600.0)
    out = Output()
    cfg = CFG["interactive"]
    other = KeyMeta("01a219fe-a712-7523-b8e2-000000000001", "team/other", "team", "interactive")
    engine.push(ev(T0, prompt="hello there"), META, cfg)
    for i in range(1, 5 * 60):
        engine.push(ev(T0 + i * 60.0), other, cfg)
        engine.release(out)
    assert META.key_id not in engine.keys
    assert other.key_id in engine.keys


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 7200),
            st.integers(0, 599),
            st.integers(0, 10**6),
            st.integers(0, 10**5),
            st.sampled_from(["", "10.0.0.1", "2001:db8::1", "192.0.2.9"]),
            st.sampled_from(["", "hi", EXTRACT.format(q="x"), "步骤 思维链"]),
        ),
        max_size=200,
    )
)
def test_random_streams_never_crash_and_stay_deterministic(rows: list[tuple[Any, ...]]) -> None:
    events = [
        ev(
            T0 + t,
            status=s,
            output_tokens=o,
            input_tokens=i,
            **({"ip": ip} if ip else {}),
            **({"prompt": p} if p else {}),
        )
        for t, s, o, i, ip, p in rows
    ]
    events.sort(key=lambda e: e.ts)
    assert identities(run(events)[0]) == identities(run(events)[0])
